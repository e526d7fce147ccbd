// Package storage keeps what the agent needs to come back after a restart
// without attesting again: its X509-SVID chain and the bundle of its trust
// domain (files in data_dir), and the private key of that SVID (a
// KeyManager: "disk" writes one PEM file per key with mode 0600, "memory"
// keeps keys in memory so nothing survives a restart).
//
// Files in data_dir:
//
//	agent_svid.pem   the agent X509-SVID chain, leaf first (PEM CERTIFICATE
//	                 blocks; the first carries a "Reattestable" header)
//	bundle.pem       the X.509 authorities of the agent's trust domain
//
// Every write goes to a temporary file in the same directory, is synced and
// renamed over the old file, so a crash leaves the old or the new content.
// The package does not hold workload SVIDs (the agent signs them again after
// a restart) and does not talk to the server.
package storage

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// ErrNotFound is returned when the requested item was never stored or was
// deleted.
var ErrNotFound = errors.New("storage: not found")

// File names in the data directory.
const (
	SVIDFile   = "agent_svid.pem"
	BundleFile = "bundle.pem"
)

const (
	certBlockType      = "CERTIFICATE"
	reattestableHeader = "Reattestable"
)

// Store is the agent's data directory. Its methods are safe for concurrent
// use.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Open returns the Store of dir, creating the directory (mode 0700) when it
// does not exist.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, wrapErr(errors.New("data directory is required"))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, wrapErr(fmt.Errorf("create data directory: %w", err))
	}
	return &Store{dir: dir}, nil
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// SVID returns the stored agent X509-SVID chain (leaf first) and whether the
// server said the agent may re-attest to renew it. It returns ErrNotFound
// when no SVID is stored.
func (s *Store) SVID() (chain []*x509.Certificate, reattestable bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	blocks, err := readPEM(filepath.Join(s.dir, SVIDFile))
	if err != nil {
		return nil, false, err
	}
	certs, err := parseCertBlocks(blocks)
	if err != nil {
		return nil, false, wrapErr(fmt.Errorf("agent SVID: %w", err))
	}
	reattestable, _ = strconv.ParseBool(blocks[0].Headers[reattestableHeader])
	return certs, reattestable, nil
}

// SetSVID stores the agent X509-SVID chain (leaf first), replacing the
// previous one atomically.
func (s *Store) SetSVID(chain []*x509.Certificate, reattestable bool) error {
	if len(chain) == 0 {
		return wrapErr(errors.New("agent SVID chain is empty"))
	}
	var data []byte
	for i, cert := range chain {
		b := &pem.Block{Type: certBlockType, Bytes: cert.Raw}
		if i == 0 {
			b.Headers = map[string]string{reattestableHeader: strconv.FormatBool(reattestable)}
		}
		data = append(data, pem.EncodeToMemory(b)...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return writeFileAtomic(filepath.Join(s.dir, SVIDFile), data, 0o644)
}

// DeleteSVID removes the stored agent SVID; the next start attests again.
// Deleting a missing SVID is not an error.
func (s *Store) DeleteSVID() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(filepath.Join(s.dir, SVIDFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return wrapErr(err)
	}
	return nil
}

// Bundle returns the stored X.509 authorities of the agent's trust domain,
// or ErrNotFound.
func (s *Store) Bundle() ([]*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	blocks, err := readPEM(filepath.Join(s.dir, BundleFile))
	if err != nil {
		return nil, err
	}
	certs, err := parseCertBlocks(blocks)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("bundle: %w", err))
	}
	return certs, nil
}

// SetBundle stores the X.509 authorities of the agent's trust domain,
// replacing the previous ones atomically.
func (s *Store) SetBundle(authorities []*x509.Certificate) error {
	if len(authorities) == 0 {
		return wrapErr(errors.New("bundle has no X.509 authorities"))
	}
	var data []byte
	for _, cert := range authorities {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: certBlockType, Bytes: cert.Raw})...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return writeFileAtomic(filepath.Join(s.dir, BundleFile), data, 0o644)
}

// readPEM returns the PEM blocks of path; ErrNotFound when the file is
// missing or holds no block.
func readPEM(path string) ([]*pem.Block, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, wrapErr(err)
	}
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, ErrNotFound
	}
	return blocks, nil
}

func parseCertBlocks(blocks []*pem.Block) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, 0, len(blocks))
	for _, b := range blocks {
		if b.Type != certBlockType {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// writeFileAtomic writes data to a temporary file beside path with mode
// perm, syncs it, renames it over path and syncs the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return wrapErr(err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return wrapErr(err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return wrapErr(err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return wrapErr(err)
	}
	if err := f.Close(); err != nil {
		return wrapErr(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return wrapErr(err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func wrapErr(err error) error {
	return fmt.Errorf("storage: %w", err)
}
