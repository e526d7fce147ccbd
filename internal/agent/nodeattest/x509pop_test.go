package nodeattest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/x509pop"
)

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestX509PoPAgent(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "node-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPath := writePEM(t, dir, "node.pem", "CERTIFICATE", der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPath := writePEM(t, dir, "node.key", "PRIVATE KEY", keyDER)
	otherDER, _ := x509.MarshalECPrivateKey(other)
	otherPath := writePEM(t, dir, "other.key", "EC PRIVATE KEY", otherDER)

	t.Run("ok/payload and response verify", func(t *testing.T) {
		a, err := NewX509PoP(certPath, keyPath, "")
		if err != nil {
			t.Fatal(err)
		}
		payload, err := a.Payload(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var data x509pop.AttestationData
		if err := json.Unmarshal(payload, &data); err != nil || len(data.Certificates) != 1 {
			t.Fatalf("payload %s: %v", payload, err)
		}
		cert, _ := x509.ParseCertificate(data.Certificates[0])
		ch, _ := x509pop.NewChallenge(cert)
		chBytes, _ := json.Marshal(ch)
		respBytes, err := a.Respond(context.Background(), chBytes)
		if err != nil {
			t.Fatal(err)
		}
		var resp x509pop.Response
		if err := json.Unmarshal(respBytes, &resp); err != nil {
			t.Fatal(err)
		}
		if err := x509pop.Verify(cert.PublicKey, ch, &resp); err != nil {
			t.Fatalf("server would refuse our response: %v", err)
		}
	})
	t.Run("fail/key does not match certificate", func(t *testing.T) {
		if _, err := NewX509PoP(certPath, otherPath, ""); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("fail/missing certificate file names it", func(t *testing.T) {
		if _, err := NewX509PoP(filepath.Join(dir, "nope.pem"), keyPath, ""); err == nil || !strings.Contains(err.Error(), "nope.pem") {
			t.Fatalf("got %v", err)
		}
	})
}
