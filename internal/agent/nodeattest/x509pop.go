package nodeattest

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/neural-hive/hive-identity/internal/x509pop"
)

// X509PoP attests by proving possession of the key of a certificate that
// chains to a CA the server trusts (SPIRE's x509pop, external_pki mode). The
// payload is the certificate chain; the server's challenge is answered by
// signing it with the private key.
type X509PoP struct {
	chain [][]byte
	key   crypto.Signer
}

// NewX509PoP loads the certificate (leaf first), optional intermediates and
// the private key (PKCS#8, SEC 1 or PKCS#1 PEM), and checks they belong together.
func NewX509PoP(certificatePath, privateKeyPath, intermediatesPath string) (*X509PoP, error) {
	chain, err := readCertificates(certificatePath)
	if err != nil {
		return nil, err
	}
	if intermediatesPath != "" {
		more, err := readCertificates(intermediatesPath)
		if err != nil {
			return nil, err
		}
		chain = append(chain, more...)
	}
	key, err := readPrivateKey(privateKeyPath)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("x509pop: parse %s: %w", certificatePath, err)
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, fmt.Errorf("x509pop: private key %s does not match certificate %s", privateKeyPath, certificatePath)
	}
	return &X509PoP{chain: chain, key: key}, nil
}

var _ Attestor = (*X509PoP)(nil)

// Type returns "x509pop".
func (*X509PoP) Type() string { return x509pop.PluginName }

// Payload returns the chain as SPIRE's AttestationData JSON.
func (p *X509PoP) Payload(context.Context) ([]byte, error) {
	return json.Marshal(x509pop.AttestationData{Certificates: p.chain})
}

// Respond signs the server's challenge with the certificate's key.
func (p *X509PoP) Respond(_ context.Context, challenge []byte) ([]byte, error) {
	var ch x509pop.Challenge
	if err := json.Unmarshal(challenge, &ch); err != nil {
		return nil, fmt.Errorf("x509pop: unmarshal challenge: %w", err)
	}
	resp, err := x509pop.Respond(p.key, &ch)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

func readCertificates(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("x509pop: %w", err)
	}
	var out [][]byte
	for rest := raw; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, b.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("x509pop: no certificate in %s", path)
	}
	return out, nil
}

func readPrivateKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("x509pop: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("x509pop: no PEM private key in %s", path)
	}
	var key any
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("x509pop: parse private key %s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("x509pop: private key cannot sign")
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
