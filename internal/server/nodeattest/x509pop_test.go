package nodeattest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
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

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/x509pop"
)

var td = spiffeid.RequireTrustDomainFromString("neural-hive.local")

type testCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCert(t *testing.T, parent *testCert, cn string, isCA bool, notBefore, notAfter time.Time, rsaKey bool) *testCert {
	t.Helper()
	var key crypto.Signer
	var err error
	if rsaKey {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCert{cert: c, key: key}
}

func writeBundle(t *testing.T, certs ...*x509.Certificate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func payload(certs ...*x509.Certificate) []byte {
	var d x509pop.AttestationData
	for _, c := range certs {
		d.Certificates = append(d.Certificates, c.Raw)
	}
	b, _ := json.Marshal(d)
	return b
}

// answer is the agent side: it answers each challenge with key.
func answer(key crypto.Signer) Challenger {
	return func(_ context.Context, chBytes []byte) ([]byte, error) {
		var ch x509pop.Challenge
		if err := json.Unmarshal(chBytes, &ch); err != nil {
			return nil, err
		}
		resp, err := x509pop.Respond(key, &ch)
		if err != nil {
			return nil, err
		}
		return json.Marshal(resp)
	}
}

func TestX509PoP(t *testing.T) {
	now := time.Now()
	root := newCert(t, nil, "root", true, now.Add(-time.Hour), now.Add(time.Hour), false)
	inter := newCert(t, root, "inter", true, now.Add(-time.Hour), now.Add(time.Hour), false)
	leaf := newCert(t, inter, "node-1", false, now.Add(-time.Hour), now.Add(time.Hour), false)
	rsaLeaf := newCert(t, root, "node-rsa", false, now.Add(-time.Hour), now.Add(time.Hour), true)
	expired := newCert(t, root, "old", false, now.Add(-2*time.Hour), now.Add(-time.Hour), false)
	future := newCert(t, root, "future", false, now.Add(time.Hour), now.Add(2*time.Hour), false)
	otherRoot := newCert(t, nil, "other", true, now.Add(-time.Hour), now.Add(time.Hour), false)
	foreign := newCert(t, otherRoot, "node-x", false, now.Add(-time.Hour), now.Add(time.Hour), false)
	traversal := newCert(t, root, "x", false, now.Add(-time.Hour), now.Add(time.Hour), false)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	p, err := NewX509PoP(td, X509PoPConfig{CABundlePath: writeBundle(t, root.cert)})
	if err != nil {
		t.Fatal(err)
	}
	cnTemplate, err := NewX509PoP(td, X509PoPConfig{CABundlePath: writeBundle(t, root.cert), AgentPathTemplate: "/x509pop/{{ .Subject.CommonName }}"})
	if err != nil {
		t.Fatal(err)
	}
	traversalCN := newCert(t, root, "../../spire/server", false, now.Add(-time.Hour), now.Add(time.Hour), false)

	for _, tt := range []struct {
		name    string
		p       *X509PoP
		payload []byte
		key     crypto.Signer
		wantID  string
		wantErr string
	}{
		{name: "ok/ecdsa leaf through intermediate", p: p, payload: payload(leaf.cert, inter.cert), key: leaf.key,
			wantID: "spiffe://neural-hive.local/spire/agent/x509pop/" + x509pop.Fingerprint(leaf.cert)},
		{name: "ok/rsa leaf", p: p, payload: payload(rsaLeaf.cert), key: rsaLeaf.key,
			wantID: "spiffe://neural-hive.local/spire/agent/x509pop/" + x509pop.Fingerprint(rsaLeaf.cert)},
		{name: "ok/template from CN", p: cnTemplate, payload: payload(traversal.cert), key: traversal.key,
			wantID: "spiffe://neural-hive.local/spire/agent/x509pop/x"},
		{name: "fail/T8 expired", p: p, payload: payload(expired.cert), key: expired.key, wantErr: "certificate verification failed"},
		{name: "fail/T8 not yet valid", p: p, payload: payload(future.cert), key: future.key, wantErr: "certificate verification failed"},
		{name: "fail/T8 chain to another CA", p: p, payload: payload(foreign.cert), key: foreign.key, wantErr: "certificate verification failed"},
		{name: "fail/T8 verified cert is not the signing key", p: p, payload: payload(leaf.cert, inter.cert), key: stranger, wantErr: "challenge response verification failed"},
		{name: "fail/T8 chain too long", p: p, payload: payload(leaf.cert, inter.cert, inter.cert, inter.cert, inter.cert, inter.cert, inter.cert, inter.cert, inter.cert), key: leaf.key, wantErr: "chain too long"},
		{name: "fail/T8 oversized payload", p: p, payload: []byte(`{"certificates":["` + strings.Repeat("A", x509pop.MaxChainBytes) + `"]}`), key: leaf.key, wantErr: "too large"},
		{name: "fail/no certificates", p: p, payload: []byte(`{"certificates":[]}`), key: leaf.key, wantErr: "no certificate"},
		{name: "fail/garbage", p: p, payload: []byte(`not json`), key: leaf.key, wantErr: "unmarshal attestation data"},
		{name: "fail/T5 CN cannot change the ID path", p: cnTemplate, payload: payload(traversalCN.cert), key: traversalCN.key, wantErr: "invalid agent ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.p.Attest(context.Background(), tt.payload, answer(tt.key))
			if tt.wantErr != "" {
				r, ok := IsRefusal(err)
				if !ok || !strings.Contains(r.Msg, tt.wantErr) {
					t.Fatalf("want refusal %q, got %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.AgentID.String() != tt.wantID {
				t.Fatalf("agent ID %s, want %s", res.AgentID, tt.wantID)
			}
			if !res.CanReattest {
				t.Fatal("x509pop agents can re-attest")
			}
		})
	}

	t.Run("ok/selectors", func(t *testing.T) {
		res, err := p.Attest(context.Background(), payload(leaf.cert, inter.cert), answer(leaf.key))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{
			"subject:cn:node-1": true,
			"ca:fingerprint:" + x509pop.Fingerprint(inter.cert):               true,
			"ca:fingerprint:" + x509pop.Fingerprint(root.cert):                true,
			"serialnumber:" + x509pop.SerialNumberHex(leaf.cert.SerialNumber): true,
		}
		if len(res.Selectors) != len(want) {
			t.Fatalf("selectors %v", res.Selectors)
		}
		for _, s := range res.Selectors {
			if s.Type != "x509pop" || !want[s.Value] {
				t.Fatalf("unexpected selector %v", s)
			}
		}
	})

	t.Run("fail/T8 replayed response to an earlier challenge", func(t *testing.T) {
		var recorded []byte
		_, err := p.Attest(context.Background(), payload(leaf.cert, inter.cert), func(ctx context.Context, ch []byte) ([]byte, error) {
			r, err := answer(leaf.key)(ctx, ch)
			recorded = r
			return r, err
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Attest(context.Background(), payload(leaf.cert, inter.cert), func(context.Context, []byte) ([]byte, error) {
			return recorded, nil
		})
		if r, ok := IsRefusal(err); !ok || !r.Denied {
			t.Fatalf("replay accepted: %v", err)
		}
	})

	t.Run("fail/config without bundle", func(t *testing.T) {
		if _, err := NewX509PoP(td, X509PoPConfig{}); err == nil || !strings.Contains(err.Error(), "ca_bundle_path") {
			t.Fatalf("got %v", err)
		}
	})
}
