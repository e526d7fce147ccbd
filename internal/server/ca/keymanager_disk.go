package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
)

// DiskKeyManager keeps every key in one JSON file, {"keys": {"<id>":
// "<base64 PKCS#8>"}}, the layout of SPIRE's "disk" KeyManager keys_path, so
// keys survive restarts. Every change rewrites the whole file through a
// temporary file in the same directory and a rename, so a crash leaves
// either the old or the new file, never a torn one. The file has mode 0600
// and its directory is created with mode 0700. It is safe for concurrent
// use within one process; two processes must not share a file.
type DiskKeyManager struct {
	path string

	mu   sync.Mutex
	keys map[string]crypto.Signer
}

var _ KeyManager = (*DiskKeyManager)(nil)

type diskKeysFile struct {
	Keys map[string][]byte `json:"keys"`
}

// NewDiskKeyManager opens the key file at path, loading its keys if it
// exists. A missing file is not an error (it is written on the first
// GenerateKey); an unreadable or malformed one is, and the error names the
// path. A file readable by group or others is tightened to 0600 (SPI-01-002).
func NewDiskKeyManager(path string) (*DiskKeyManager, error) {
	if path == "" {
		return nil, errors.New("ca: disk key manager: keys_path is required")
	}
	m := &DiskKeyManager{path: path, keys: make(map[string]crypto.Signer)}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, fmt.Errorf("ca: disk key manager: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("ca: disk key manager: tighten mode of %q: %w", path, err)
		}
	}
	var f diskKeysFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("ca: disk key manager: decode %q: %w", path, err)
	}
	for id, der := range f.Keys {
		key, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("ca: disk key manager: key %q in %q: %w", id, path, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("ca: disk key manager: key %q in %q: %T is not a signer", id, path, key)
		}
		m.keys[id] = signer
	}
	return m, nil
}

// Path returns the key file's path.
func (m *DiskKeyManager) Path() string { return m.path }

// GenerateKey creates a key of keyType under id, replacing any previous one,
// and returns after the file holding it has been written and synced.
func (m *DiskKeyManager) GenerateKey(_ context.Context, id string, keyType string) (crypto.Signer, error) {
	if id == "" {
		return nil, errors.New("ca: key ID is required")
	}
	key, err := newPrivateKey(keyType)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := maps.Clone(m.keys)
	next[id] = key
	if err := m.write(next); err != nil {
		return nil, err
	}
	m.keys = next
	return key, nil
}

// GetKey returns the key stored under id, or ErrKeyNotFound.
func (m *DiskKeyManager) GetKey(_ context.Context, id string) (crypto.Signer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key, ok := m.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, id)
	}
	return key, nil
}

// write stores keys atomically: temp file (0600) in the same directory,
// fsync, rename over the target, fsync the directory.
func (m *DiskKeyManager) write(keys map[string]crypto.Signer) error {
	f := diskKeysFile{Keys: make(map[string][]byte, len(keys))}
	for id, key := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("ca: disk key manager: marshal key %q: %w", id, err)
		}
		f.Keys[id] = der
	}
	data, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return fmt.Errorf("ca: disk key manager: %w", err)
	}
	dir := filepath.Dir(m.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca: disk key manager: create directory %q: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(m.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("ca: disk key manager: %w", err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("ca: disk key manager: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("ca: disk key manager: write %q: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("ca: disk key manager: sync %q: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ca: disk key manager: %w", err)
	}
	if err := os.Rename(tmpName, m.path); err != nil {
		return fmt.Errorf("ca: disk key manager: replace %q: %w", m.path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
