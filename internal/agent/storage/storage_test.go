package storage_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/agent/storage"
)

func newCert(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestStoreSVIDRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SVID(); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SVID() on empty store: err = %v, want ErrNotFound", err)
	}
	chain := []*x509.Certificate{newCert(t, "leaf"), newCert(t, "intermediate")}
	for _, reattestable := range []bool{true, false} {
		if err := s.SetSVID(chain, reattestable); err != nil {
			t.Fatal(err)
		}
		// A new Store on the same directory sees what the first one wrote.
		s2, err := storage.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		got, gotReattestable, err := s2.SVID()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !got[0].Equal(chain[0]) || !got[1].Equal(chain[1]) {
			t.Fatalf("SVID chain mismatch")
		}
		if gotReattestable != reattestable {
			t.Fatalf("reattestable = %v, want %v", gotReattestable, reattestable)
		}
	}
	if err := s.DeleteSVID(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SVID(); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SVID() after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSVID(); err != nil {
		t.Fatalf("second DeleteSVID: %v", err)
	}
	// No temporary files are left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
}

func TestStoreBundleRoundTrip(t *testing.T) {
	s, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Bundle(); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Bundle() on empty store: err = %v, want ErrNotFound", err)
	}
	roots := []*x509.Certificate{newCert(t, "root1"), newCert(t, "root2")}
	if err := s.SetBundle(roots); err != nil {
		t.Fatal(err)
	}
	got, err := s.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Equal(roots[0]) || !got[1].Equal(roots[1]) {
		t.Fatal("bundle mismatch")
	}
	if err := s.SetBundle(nil); err == nil {
		t.Fatal("SetBundle(nil) succeeded")
	}
}

func TestStoreCorruptFile(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	pemData := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
	if err := os.WriteFile(filepath.Join(dir, storage.SVIDFile), []byte(pemData), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SVID(); err == nil || errors.Is(err, storage.ErrNotFound) || !strings.HasPrefix(err.Error(), "storage: ") {
		t.Fatalf("SVID() on corrupt file: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, storage.BundleFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Bundle(); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Bundle() on a file without PEM: err = %v, want ErrNotFound", err)
	}
}

func TestKeyManagers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	disk, err := storage.NewDiskKeyManager(dir)
	if err != nil {
		t.Fatal(err)
	}
	mem := storage.NewMemoryKeyManager()

	t.Run("ok/disk", func(t *testing.T) {
		if _, err := disk.Key("agent-svid-A"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Key() before generate: err = %v, want ErrNotFound", err)
		}
		k1, err := disk.GenerateKey("agent-svid-A")
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "agent-svid-A.key"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode = %v, want 0600", fi.Mode().Perm())
		}
		// Another manager on the same directory (a restart) finds the key.
		disk2, err := storage.NewDiskKeyManager(dir)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := disk2.Key("agent-svid-A")
		if err != nil {
			t.Fatal(err)
		}
		if !k1.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
			t.Fatal("reloaded key differs")
		}
		// Generating again replaces the key.
		k3, err := disk.GenerateKey("agent-svid-A")
		if err != nil {
			t.Fatal(err)
		}
		k4, err := disk2.Key("agent-svid-A")
		if err != nil {
			t.Fatal(err)
		}
		if !k3.Public().(*ecdsa.PublicKey).Equal(k4.Public()) || k3.Public().(*ecdsa.PublicKey).Equal(k1.Public()) {
			t.Fatal("regenerated key not stored")
		}
	})
	t.Run("ok/memory", func(t *testing.T) {
		if _, err := mem.Key("agent-svid-A"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Key() before generate: err = %v, want ErrNotFound", err)
		}
		k1, err := mem.GenerateKey("agent-svid-A")
		if err != nil {
			t.Fatal(err)
		}
		k2, err := mem.Key("agent-svid-A")
		if err != nil {
			t.Fatal(err)
		}
		if !k1.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
			t.Fatal("key differs")
		}
		// A new memory manager (a restart) has nothing.
		if _, err := storage.NewMemoryKeyManager().Key("agent-svid-A"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("fresh memory manager: err = %v, want ErrNotFound", err)
		}
	})
	for _, id := range []string{"", "../escape", "a/b", "a.key"} {
		t.Run("fail/id "+id, func(t *testing.T) {
			if _, err := disk.GenerateKey(id); err == nil || !strings.Contains(err.Error(), "key id") {
				t.Fatalf("disk GenerateKey(%q): err = %v", id, err)
			}
			if _, err := mem.GenerateKey(id); err == nil || !strings.Contains(err.Error(), "key id") {
				t.Fatalf("memory GenerateKey(%q): err = %v", id, err)
			}
		})
	}
}
