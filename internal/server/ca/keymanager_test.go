package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyManagers_KeyTypes(t *testing.T) {
	managers := map[string]func(t *testing.T) KeyManager{
		"memory": func(*testing.T) KeyManager { return NewMemoryKeyManager() },
		"disk": func(t *testing.T) KeyManager {
			km, err := NewDiskKeyManager(filepath.Join(t.TempDir(), "keys.json"))
			requireNoError(t, err)
			return km
		},
	}
	for name, open := range managers {
		for _, tt := range []struct {
			name    string
			keyType string
			check   func(crypto.PublicKey) bool
			msg     string
		}{
			{name: "ok/default is ec-p256", check: isCurve(elliptic.P256())},
			{name: "ok/ec-p256", keyType: KeyTypeECP256, check: isCurve(elliptic.P256())},
			{name: "ok/ec-p384", keyType: KeyTypeECP384, check: isCurve(elliptic.P384())},
			{name: "ok/rsa-2048", keyType: KeyTypeRSA2048, check: isRSA(2048)},
			{name: "fail/unknown", keyType: "ec-p521", msg: `unsupported key type "ec-p521"`},
		} {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				km := open(t)
				ctx := context.Background()
				key, err := km.GenerateKey(ctx, "x509-CA-A", tt.keyType)
				if tt.msg != "" {
					requireErr(t, err, ErrUnsupportedKeyType, tt.msg)
					_, err := km.GetKey(ctx, "x509-CA-A")
					requireErr(t, err, ErrKeyNotFound, "x509-CA-A")
					return
				}
				requireNoError(t, err)
				if !tt.check(key.Public()) {
					t.Fatalf("key %T", key.Public())
				}
				got, err := km.GetKey(ctx, "x509-CA-A")
				requireNoError(t, err)
				if !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
					t.Fatal("GetKey returned another key")
				}
				_, err = km.GetKey(ctx, "JWT-Signer-A")
				requireErr(t, err, ErrKeyNotFound, `"JWT-Signer-A"`)
			})
		}
	}
}

func isCurve(c elliptic.Curve) func(crypto.PublicKey) bool {
	return func(p crypto.PublicKey) bool { k, ok := p.(*ecdsa.PublicKey); return ok && k.Curve == c }
}

func isRSA(bits int) func(crypto.PublicKey) bool {
	return func(p crypto.PublicKey) bool { k, ok := p.(*rsa.PublicKey); return ok && k.N.BitLen() == bits }
}

// TestDiskKeyManager_File: mode 0600 in a 0700 directory (T15), keys reload
// after reopening, replacing a key keeps the others, no temp files remain.
func TestDiskKeyManager_File(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys")
	path := filepath.Join(dir, "keys.json")
	ctx := context.Background()
	km, err := NewDiskKeyManager(path)
	requireNoError(t, err)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("opening must not create the file")
	}
	a, err := km.GenerateKey(ctx, "x509-CA-A", "")
	requireNoError(t, err)
	j, err := km.GenerateKey(ctx, "JWT-Signer-A", KeyTypeECP384)
	requireNoError(t, err)

	fi, err := os.Stat(path)
	requireNoError(t, err)
	if fi.Mode().Perm() != 0o600 { // T15
		t.Fatalf("T15: key file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	requireNoError(t, err)
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("T15: key directory mode %v, want 0700", di.Mode().Perm())
	}

	reopened, err := NewDiskKeyManager(path)
	requireNoError(t, err)
	for id, want := range map[string]crypto.Signer{"x509-CA-A": a, "JWT-Signer-A": j} {
		got, err := reopened.GetKey(ctx, id)
		requireNoError(t, err)
		if !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(want.Public()) {
			t.Fatalf("%s changed after reopen", id)
		}
	}
	// Replacing one key keeps the other.
	a2, err := reopened.GenerateKey(ctx, "x509-CA-A", "")
	requireNoError(t, err)
	again, err := NewDiskKeyManager(path)
	requireNoError(t, err)
	gotA, _ := again.GetKey(ctx, "x509-CA-A")
	gotJ, _ := again.GetKey(ctx, "JWT-Signer-A")
	if !gotA.Public().(*ecdsa.PublicKey).Equal(a2.Public()) || !gotJ.Public().(*ecdsa.PublicKey).Equal(j.Public()) {
		t.Fatal("keys after replace")
	}
	entries, err := os.ReadDir(dir)
	requireNoError(t, err)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files, want only keys.json", len(entries))
	}
	// SPIRE's layout: {"keys": {"<id>": "<base64 PKCS#8>"}}.
	data, err := os.ReadFile(path)
	requireNoError(t, err)
	if !strings.Contains(string(data), `"keys"`) || !strings.Contains(string(data), `"x509-CA-A"`) {
		t.Fatalf("file layout: %s", data)
	}
}

// TestDiskKeyManager_Open covers opening existing files.
func TestDiskKeyManager_Open(t *testing.T) {
	for _, tt := range []struct {
		name    string
		content string
		mode    os.FileMode
		msg     string
	}{
		{name: "ok/empty keys", content: `{"keys":{}}`, mode: 0o600},
		{name: "ok/loose mode tightened to 0600", content: `{"keys":{}}`, mode: 0o644},
		{name: "fail/not JSON", content: `keys`, mode: 0o600, msg: "decode"},
		{name: "fail/bad key", content: `{"keys":{"x509-CA-A":"` + base64.StdEncoding.EncodeToString([]byte("nope")) + `"}}`, mode: 0o600, msg: `key "x509-CA-A" in`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			requireNoError(t, os.WriteFile(path, []byte(tt.content), tt.mode))
			requireNoError(t, os.Chmod(path, tt.mode))
			_, err := NewDiskKeyManager(path)
			if tt.msg != "" {
				requireErr(t, err, nil, tt.msg)
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q does not name the file", err)
				}
				return
			}
			requireNoError(t, err)
			fi, err := os.Stat(path)
			requireNoError(t, err)
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("T15: mode %v after open, want 0600", fi.Mode().Perm())
			}
		})
	}
	t.Run("fail/no path", func(t *testing.T) {
		_, err := NewDiskKeyManager("")
		requireErr(t, err, nil, "keys_path is required")
	})
}
