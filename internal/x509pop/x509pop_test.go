package x509pop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
)

// The JSON field names are SPIRE's; a SPIRE agent or server reads ours.
func TestWireFormat(t *testing.T) {
	b, _ := json.Marshal(AttestationData{Certificates: [][]byte{{1, 2}}})
	if string(b) != `{"certificates":["AQI="]}` {
		t.Fatalf("attestation data %s", b)
	}
	b, _ = json.Marshal(Challenge{ECDSASignature: &Nonce{Nonce: []byte{1}}})
	if string(b) != `{"rsa_signature":null,"ecdsa_signature":{"nonce":"AQ=="}}` {
		t.Fatalf("challenge %s", b)
	}
	b, _ = json.Marshal(Response{ECDSASignature: &ECDSAResponse{Nonce: []byte{1}, R: []byte{2}, S: []byte{3}}})
	if !strings.Contains(string(b), `"ecdsa_signature":{"nonce":"AQ==","r":"Ag==","s":"Aw=="}`) {
		t.Fatalf("response %s", b)
	}
}

func TestChallengeResponse(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tt := range []struct {
		name string
		pub  any
		sign any
		ok   bool
	}{
		{"ok/ecdsa", &ec.PublicKey, ec, true},
		{"ok/rsa", &rk.PublicKey, rk, true},
		{"fail/T8 other key", &ec.PublicKey, other, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := NewChallenge(&x509.Certificate{PublicKey: tt.pub})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := Respond(tt.sign.(crypto.Signer), ch)
			if err != nil {
				t.Fatal(err)
			}
			err = Verify(tt.pub, ch, resp)
			if (err == nil) != tt.ok {
				t.Fatalf("verify: %v", err)
			}
		})
	}
	t.Run("fail/T8 short nonce", func(t *testing.T) {
		ch := &Challenge{ECDSASignature: &Nonce{Nonce: []byte{1, 2, 3}}}
		if _, err := Respond(ec, ch); err == nil {
			t.Fatal("short challenge nonce accepted")
		}
	})
	if SerialNumberHex(big.NewInt(0xabc)) != "0abc" {
		t.Fatal("serial hex not even-length")
	}
}
