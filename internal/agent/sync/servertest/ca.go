package servertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CA is a test authority of one trust domain: a root (the bundle) and an
// intermediate that signs every SVID, so chains have two certificates.
type CA struct {
	TD           spiffeid.TrustDomain
	Root         *x509.Certificate
	Intermediate *x509.Certificate

	rootKey crypto.Signer
	intKey  crypto.Signer

	mu     sync.Mutex
	serial int64
}

// NewCA returns a CA for td valid from an hour ago for a week.
func NewCA(tb testing.TB, td spiffeid.TrustDomain) *CA {
	tb.Helper()
	ca := &CA{TD: td, rootKey: newKey(tb), intKey: newKey(tb)}
	now := time.Now()
	root := &x509.Certificate{
		SerialNumber:          ca.nextSerial(),
		Subject:               pkix.Name{Organization: []string{"servertest"}, CommonName: "root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	ca.Root = mustCreate(tb, root, root, ca.rootKey.Public(), ca.rootKey)
	inter := &x509.Certificate{
		SerialNumber:          ca.nextSerial(),
		Subject:               pkix.Name{Organization: []string{"servertest"}, CommonName: "intermediate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	ca.Intermediate = mustCreate(tb, inter, ca.Root, ca.intKey.Public(), ca.rootKey)
	return ca
}

// Sign returns an X509-SVID chain (leaf, intermediate) for id and pub,
// valid from now for ttl.
func (ca *CA) Sign(id spiffeid.ID, pub crypto.PublicKey, ttl time.Duration, dnsNames ...string) ([]*x509.Certificate, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          ca.nextSerial(),
		Subject:               pkix.Name{Organization: []string{"SPIRE"}},
		NotBefore:             now.Add(-time.Second),
		NotAfter:              now.Add(ttl),
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              dnsNames,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Intermediate, pub, ca.intKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{leaf, ca.Intermediate}, nil
}

func (ca *CA) nextSerial() *big.Int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.serial++
	return big.NewInt(ca.serial)
}

func newKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func mustCreate(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}
