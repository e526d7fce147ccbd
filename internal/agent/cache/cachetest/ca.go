// Package cachetest provides a small test CA (root, intermediate and JWT
// key for one trust domain) that makes X509-SVIDs, JWT-SVIDs, bundles and
// entries for tests of the agent's cache and Workload API, and a fake
// JWTSigner on top of it.
package cachetest

import (
	"context"
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

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
)

// CA is a test certificate authority of one trust domain: a root, an
// intermediate that signs the X509-SVIDs, and a JWT signing key.
type CA struct {
	TD           spiffeid.TrustDomain
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	JWTKey       crypto.Signer
	JWTKeyID     string

	rootKey crypto.Signer
	intKey  crypto.Signer
}

// NewCA returns a CA for td valid from an hour ago for a day.
func NewCA(tb testing.TB, td spiffeid.TrustDomain) *CA {
	tb.Helper()
	now := time.Now()
	ca := &CA{TD: td, rootKey: newKey(tb), intKey: newKey(tb), JWTKey: newKey(tb), JWTKeyID: "kid-" + td.Name()}
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{Organization: []string{"cachetest"}, CommonName: td.Name() + " root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	ca.Root = create(tb, rootTmpl, rootTmpl, ca.rootKey.Public(), ca.rootKey)
	intTmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{Organization: []string{"cachetest"}, CommonName: td.Name() + " intermediate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	ca.Intermediate = create(tb, intTmpl, ca.Root, ca.intKey.Public(), ca.rootKey)
	return ca
}

// Bundle returns a bundle with the root as X.509 authority and the JWT key.
func (ca *CA) Bundle() *spiffebundle.Bundle {
	b := spiffebundle.New(ca.TD)
	b.AddX509Authority(ca.Root)
	_ = b.AddJWTAuthority(ca.JWTKeyID, ca.JWTKey.Public())
	return b
}

// X509SVID returns an SVID for id valid from notBefore to notAfter, with a
// fresh P-256 key and the chain [leaf, intermediate].
func (ca *CA) X509SVID(tb testing.TB, id spiffeid.ID, notBefore, notAfter time.Time) *cache.X509SVID {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{Organization: []string{"SPIRE"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{id.URL()},
	}
	leaf := create(tb, tmpl, ca.Intermediate, key.Public(), ca.intKey)
	// Parse the intermediate again, as a sync loop parsing a server
	// response would: the cache must share equal intermediates.
	inter, err := x509.ParseCertificate(ca.Intermediate.Raw)
	if err != nil {
		tb.Fatalf("parse intermediate: %v", err)
	}
	return &cache.X509SVID{Chain: []*x509.Certificate{leaf, inter}, Key: key}
}

// SVIDFor returns an SVID for e valid from 10 s ago for an hour, signed for
// e's current revision.
func (ca *CA) SVIDFor(tb testing.TB, e *cache.Entry) *cache.X509SVID {
	tb.Helper()
	now := time.Now()
	svid := ca.X509SVID(tb, e.SPIFFEID, now.Add(-10*time.Second), now.Add(time.Hour))
	svid.EntryRevision = e.RevisionNumber
	return svid
}

// SignJWT signs claims with the CA's JWT key (ES256, kid, typ JWT unless
// opts sets another typ). opts may add headers; nil uses the defaults.
func (ca *CA) SignJWT(tb testing.TB, claims map[string]any, opts *jose.SignerOptions) string {
	tb.Helper()
	tok, err := signJWT(ca.JWTKey, ca.JWTKeyID, claims, opts)
	if err != nil {
		tb.Fatalf("sign JWT: %v", err)
	}
	return tok
}

// JWTSVID returns a JWT-SVID for id and audience, issued now for ttl.
func (ca *CA) JWTSVID(tb testing.TB, id spiffeid.ID, audience []string, ttl time.Duration) string {
	tb.Helper()
	now := time.Now()
	return ca.SignJWT(tb, map[string]any{
		"sub": id.String(),
		"aud": audience,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}, nil)
}

func signJWT(key crypto.Signer, kid string, claims map[string]any, opts *jose.SignerOptions) (string, error) {
	if opts == nil {
		opts = &jose.SignerOptions{}
	}
	if _, ok := opts.ExtraHeaders[jose.HeaderType]; !ok {
		opts = opts.WithType("JWT")
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.ES256,
		Key:       jose.JSONWebKey{Key: key, KeyID: kid},
	}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// Entry returns an entry with revision 1, created at 1.
func Entry(id, spiffeID string, selectors ...string) *cache.Entry {
	return &cache.Entry{
		ID:             id,
		SPIFFEID:       spiffeid.RequireFromString(spiffeID),
		Selectors:      selectors,
		RevisionNumber: 1,
		CreatedAt:      1,
	}
}

// JWTSigner is a fake cache.JWTSigner that signs with a CA. Its methods are
// safe for concurrent use.
type JWTSigner struct {
	CA  *CA
	TTL time.Duration // zero: 5 minutes

	mu    sync.Mutex
	calls int
	err   error
}

var _ cache.JWTSigner = (*JWTSigner)(nil)

// NewJWTSVID signs a JWT-SVID for entry's SPIFFE ID, or returns the
// injected error.
func (s *JWTSigner) NewJWTSVID(_ context.Context, entry *cache.Entry, audience []string) (*cache.JWTSVID, error) {
	s.mu.Lock()
	s.calls++
	err, ttl := s.err, s.TTL
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = 5 * time.Minute
	}
	now := time.Now().Truncate(time.Second)
	tok, err := signJWT(s.CA.JWTKey, s.CA.JWTKeyID, map[string]any{
		"sub": entry.SPIFFEID.String(),
		"aud": audience,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}, nil)
	if err != nil {
		return nil, err
	}
	return &cache.JWTSVID{Token: tok, IssuedAt: now, ExpiresAt: now.Add(ttl)}, nil
}

// SetError makes the following calls fail with err (nil: succeed again).
func (s *JWTSigner) SetError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Calls returns the number of NewJWTSVID calls.
func (s *JWTSigner) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func newKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatalf("serial: %v", err)
	}
	return n
}

func create(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse certificate: %v", err)
	}
	return cert
}
