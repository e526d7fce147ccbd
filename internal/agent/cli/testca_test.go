package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// testCA is a test fixture: an X.509 root (and optional intermediate) and a
// JWT signing key for one trust domain. Certificates carry whole-second
// times so that printed validity is predictable.
type testCA struct {
	tb     testing.TB
	td     spiffeid.TrustDomain
	root   *x509.Certificate
	key    crypto.Signer
	inter  *x509.Certificate // nil unless withIntermediate was called
	iKey   crypto.Signer
	jwtKey *ecdsa.PrivateKey
	jwtKID string
	now    time.Time
}

func newTestCA(tb testing.TB, td string, now time.Time) *testCA {
	tb.Helper()
	return newNamedTestCA(tb, td, td+" root", now)
}

// newNamedTestCA is newTestCA with the root's common name chosen.
func newNamedTestCA(tb testing.TB, td, commonName string, now time.Time) *testCA {
	tb.Helper()
	ca := &testCA{tb: tb, td: spiffeid.RequireTrustDomainFromString(td), now: now.Truncate(time.Second)}
	ca.key = newKey(tb)
	ca.root = ca.sign(&x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"Test"}, CommonName: commonName},
		NotBefore:             ca.now.Add(-time.Hour),
		NotAfter:              ca.now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{ca.td.ID().URL()},
	}, nil, nil, ca.key)
	jwtKey, ok := newKey(tb).(*ecdsa.PrivateKey)
	if !ok {
		tb.Fatal("not an ECDSA key")
	}
	ca.jwtKey, ca.jwtKID = jwtKey, "kid-"+td
	return ca
}

func newKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// sign issues tmpl for pub, signed by parent/parentKey (self-signed when parent is nil).
func (ca *testCA) sign(tmpl, parent *x509.Certificate, parentKey crypto.Signer, key crypto.Signer) *x509.Certificate {
	ca.tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		ca.tb.Fatal(err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		ca.tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		ca.tb.Fatal(err)
	}
	return cert
}

// withIntermediate makes later SVIDs chain through an intermediate CA.
func (ca *testCA) withIntermediate() *testCA {
	ca.iKey = newKey(ca.tb)
	ca.inter = ca.sign(&x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"Test"}, CommonName: "intermediate"},
		NotBefore:             ca.now.Add(-30 * time.Minute),
		NotAfter:              ca.now.Add(12 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, ca.root, ca.key, ca.iKey)
	return ca
}

// svid issues an X509-SVID for path and returns it as the Workload API
// carries it: chain (leaf first), PKCS#8 key, bundle DER.
func (ca *testCA) svid(path, hint string) *workload.X509SVID {
	ca.tb.Helper()
	id, err := spiffeid.FromPath(ca.td, path)
	if err != nil {
		ca.tb.Fatal(err)
	}
	key := newKey(ca.tb)
	parent, parentKey := ca.root, ca.key
	if ca.inter != nil {
		parent, parentKey = ca.inter, ca.iKey
	}
	leaf := ca.sign(&x509.Certificate{
		Subject:   pkix.Name{Organization: []string{"Test"}},
		NotBefore: ca.now.Add(-10 * time.Second),
		NotAfter:  ca.now.Add(time.Hour),
		KeyUsage:  x509.KeyUsageDigitalSignature,
		URIs:      []*url.URL{id.URL()},
	}, parent, parentKey, key)
	chain := leaf.Raw
	if ca.inter != nil {
		chain = append(append([]byte(nil), chain...), ca.inter.Raw...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		ca.tb.Fatal(err)
	}
	return &workload.X509SVID{SpiffeId: id.String(), X509Svid: chain, X509SvidKey: keyDER, Bundle: ca.root.Raw, Hint: hint}
}

// jwtBundle returns the trust domain's JWT bundle.
func (ca *testCA) jwtBundle() *jwtbundle.Bundle {
	b := jwtbundle.New(ca.td)
	if err := b.AddJWTAuthority(ca.jwtKID, ca.jwtKey.Public()); err != nil {
		ca.tb.Fatal(err)
	}
	return b
}

// jwks returns the JWT bundle as the Workload API carries it (JWKS JSON).
func (ca *testCA) jwks() []byte {
	ca.tb.Helper()
	b, err := ca.jwtBundle().Marshal()
	if err != nil {
		ca.tb.Fatal(err)
	}
	return b
}

// jwtSVID signs a JWT-SVID for path and audience, issued at the CA's time.
func (ca *testCA) jwtSVID(path string, audience []string) string {
	ca.tb.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ca.jwtKey, KeyID: ca.jwtKID}},
		new(jose.SignerOptions).WithType("JWT"))
	if err != nil {
		ca.tb.Fatal(err)
	}
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  spiffeid.RequireFromPath(ca.td, path).String(),
		Audience: audience,
		IssuedAt: jwt.NewNumericDate(ca.now),
		Expiry:   jwt.NewNumericDate(ca.now.Add(5 * time.Minute)),
	}).Serialize()
	if err != nil {
		ca.tb.Fatal(err)
	}
	return token
}
