package storage

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

const keyBlockType = "PRIVATE KEY"

// DiskKeyManager keeps private keys as PKCS#8 PEM files named <id>.key in a
// directory, each written atomically with mode 0600 (SPIRE's KeyManager
// "disk"). Its methods are safe for concurrent use.
type DiskKeyManager struct {
	dir string
	mu  sync.Mutex
}

// NewDiskKeyManager returns a DiskKeyManager on dir, creating the directory
// (mode 0700) when it does not exist.
func NewDiskKeyManager(dir string) (*DiskKeyManager, error) {
	if dir == "" {
		return nil, wrapErr(errors.New("key manager directory is required"))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, wrapErr(fmt.Errorf("create key directory: %w", err))
	}
	return &DiskKeyManager{dir: dir}, nil
}

// GenerateKey creates an ECDSA P-256 key, stores it under id (replacing any
// key with that id) and returns it. The key is on disk when GenerateKey
// returns.
func (m *DiskKeyManager) GenerateKey(id string) (crypto.Signer, error) {
	if err := checkKeyID(id); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, wrapErr(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, wrapErr(err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: keyBlockType, Bytes: der})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := writeFileAtomic(m.path(id), data, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// Key returns the key stored under id, or ErrNotFound.
func (m *DiskKeyManager) Key(id string) (crypto.Signer, error) {
	if err := checkKeyID(id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	blocks, err := readPEM(m.path(id))
	if err != nil {
		return nil, err
	}
	if blocks[0].Type != keyBlockType {
		return nil, wrapErr(fmt.Errorf("key %q: unexpected PEM block %q", id, blocks[0].Type))
	}
	key, err := x509.ParsePKCS8PrivateKey(blocks[0].Bytes)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("key %q: %w", id, err))
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, wrapErr(fmt.Errorf("key %q: %T is not a signer", id, key))
	}
	return signer, nil
}

func (m *DiskKeyManager) path(id string) string {
	return filepath.Join(m.dir, id+".key")
}

// MemoryKeyManager keeps private keys in memory only (SPIRE's KeyManager
// "memory"): after a restart no key is found and the agent attests again.
// Its methods are safe for concurrent use.
type MemoryKeyManager struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
}

// NewMemoryKeyManager returns an empty MemoryKeyManager.
func NewMemoryKeyManager() *MemoryKeyManager {
	return &MemoryKeyManager{keys: make(map[string]crypto.Signer)}
}

// GenerateKey creates an ECDSA P-256 key, keeps it under id (replacing any
// key with that id) and returns it.
func (m *MemoryKeyManager) GenerateKey(id string) (crypto.Signer, error) {
	if err := checkKeyID(id); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, wrapErr(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[id] = key
	return key, nil
}

// Key returns the key kept under id, or ErrNotFound.
func (m *MemoryKeyManager) Key(id string) (crypto.Signer, error) {
	if err := checkKeyID(id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key, ok := m.keys[id]
	if !ok {
		return nil, ErrNotFound
	}
	return key, nil
}

// checkKeyID accepts ids made of letters, digits, '-' and '_' (they become
// file names).
func checkKeyID(id string) error {
	if id == "" {
		return wrapErr(errors.New("key id is empty"))
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return wrapErr(fmt.Errorf("invalid key id %q", id))
		}
	}
	return nil
}
