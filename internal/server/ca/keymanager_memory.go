package ca

import (
	"context"
	"crypto"
	"fmt"
	"sync"
)

// MemoryKeyManager keeps keys in memory only: a restart loses them, so the
// server creates new authorities (SPIRE's "memory" KeyManager). It is safe
// for concurrent use.
type MemoryKeyManager struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
}

var _ KeyManager = (*MemoryKeyManager)(nil)

// NewMemoryKeyManager returns an empty MemoryKeyManager.
func NewMemoryKeyManager() *MemoryKeyManager {
	return &MemoryKeyManager{keys: make(map[string]crypto.Signer)}
}

// GenerateKey creates a key of keyType under id, replacing any previous one.
func (m *MemoryKeyManager) GenerateKey(_ context.Context, id string, keyType string) (crypto.Signer, error) {
	if id == "" {
		return nil, fmt.Errorf("ca: key ID is required")
	}
	key, err := newPrivateKey(keyType)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[id] = key
	return key, nil
}

// GetKey returns the key stored under id, or ErrKeyNotFound.
func (m *MemoryKeyManager) GetKey(_ context.Context, id string) (crypto.Signer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key, ok := m.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, id)
	}
	return key, nil
}
