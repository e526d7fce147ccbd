// Package spiffegrpctest holds test helpers for code that uses spiffegrpc: a
// test CA that issues X509-SVIDs and JWT-SVIDs (including deliberately broken
// ones), a fake SPIFFE Workload API served on a unix socket for go-spiffe's
// workloadapi client, a tiny gRPC service that echoes the caller's identity,
// and a log capture. It is not for production use.
package spiffegrpctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CA is a test certificate authority for one trust domain: an X.509 signing
// certificate (a root, or an intermediate made by Intermediate) and a JWT
// signing key. Its certificates are valid from one hour ago for 24 hours.
// A CA is not safe for concurrent mutation (AddJWTKey); signing is.
type CA struct {
	td     spiffeid.TrustDomain
	parent *CA
	cert   *x509.Certificate
	key    crypto.Signer

	jwtKeys map[string]crypto.Signer
	jwtKID  string
}

// NewCA returns a self-signed CA for td with an ECDSA P-256 key, the SPIFFE
// ID spiffe://td as its URI SAN, and one ECDSA P-256 JWT key.
func NewCA(tb testing.TB, td spiffeid.TrustDomain) *CA {
	tb.Helper()
	key := NewECKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(tb),
		Subject:               pkix.Name{Organization: []string{"hive-identity test"}, CommonName: "root " + td.Name()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	cert := createCert(tb, tmpl, tmpl, key.Public(), key)
	ca := &CA{td: td, cert: cert, key: key, jwtKeys: map[string]crypto.Signer{}}
	ca.jwtKID = ca.AddJWTKey(tb, NewECKey(tb))
	return ca
}

// Intermediate returns a CA whose certificate is signed by ca. SVIDs issued
// by it carry the intermediate in their chain; its bundles hold the root.
// Each mutate function may change the template before signing.
func (ca *CA) Intermediate(tb testing.TB, mutate ...func(*x509.Certificate)) *CA {
	tb.Helper()
	key := NewECKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(tb),
		Subject:               pkix.Name{CommonName: "intermediate " + ca.td.Name()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{ca.td.ID().URL()},
	}
	for _, m := range mutate {
		m(tmpl)
	}
	cert := createCert(tb, tmpl, ca.cert, key.Public(), ca.key)
	return &CA{td: ca.td, parent: ca, cert: cert, key: key, jwtKeys: ca.jwtKeys, jwtKID: ca.jwtKID}
}

// TrustDomain returns the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Cert returns the CA's own signing certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// Key returns the CA's X.509 signing key.
func (ca *CA) Key() crypto.Signer { return ca.key }

// Root returns the root certificate at the top of the CA's chain.
func (ca *CA) Root() *x509.Certificate {
	for ca.parent != nil {
		ca = ca.parent
	}
	return ca.cert
}

// X509Bundle returns a new X.509 bundle for the trust domain holding the root.
func (ca *CA) X509Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.Root()})
}

// JWTBundle returns a new JWT bundle holding every JWT key of the CA.
func (ca *CA) JWTBundle() *jwtbundle.Bundle {
	keys := make(map[string]crypto.PublicKey, len(ca.jwtKeys))
	for kid, k := range ca.jwtKeys {
		keys[kid] = k.Public()
	}
	return jwtbundle.FromJWTAuthorities(ca.td, keys)
}

// JWTKeyID returns the key ID of the CA's default JWT key.
func (ca *CA) JWTKeyID() string { return ca.jwtKID }

// JWTKey returns the JWT signing key with the given key ID, or nil.
func (ca *CA) JWTKey(kid string) crypto.Signer { return ca.jwtKeys[kid] }

// AddJWTKey adds key as a JWT authority of the CA and returns its new key ID.
func (ca *CA) AddJWTKey(tb testing.TB, key crypto.Signer) string {
	tb.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	kid := hex.EncodeToString(b)
	ca.jwtKeys[kid] = key
	return kid
}

// X509SVID issues an X509-SVID for id: an ECDSA P-256 leaf valid from one
// hour ago for one hour more, with SPIRE's leaf profile (digitalSignature,
// keyEncipherment, keyAgreement; serverAuth and clientAuth). Each mutate
// function may change the template before signing, to build broken SVIDs.
func (ca *CA) X509SVID(tb testing.TB, id spiffeid.ID, mutate ...func(*x509.Certificate)) *x509svid.SVID {
	tb.Helper()
	key := NewECKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(tb),
		Subject:               pkix.Name{Organization: []string{"SPIRE"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{id.URL()},
	}
	for _, m := range mutate {
		m(tmpl)
	}
	leaf := createCert(tb, tmpl, ca.cert, key.Public(), ca.key)
	return &x509svid.SVID{ID: id, Certificates: append([]*x509.Certificate{leaf}, ca.chain()...), PrivateKey: key}
}

// CAAsSVID returns the CA's own certificate and key presented as an SVID,
// the X5-06 attack. Its ID is spiffe://td with no path.
func (ca *CA) CAAsSVID() *x509svid.SVID {
	return &x509svid.SVID{ID: ca.td.ID(), Certificates: append([]*x509.Certificate{ca.cert}, ca.chainAbove()...), PrivateKey: ca.key}
}

// chain returns the CA's certificates from itself up to, excluding, the root.
func (ca *CA) chain() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c.parent != nil; c = c.parent {
		out = append(out, c.cert)
	}
	return out
}

func (ca *CA) chainAbove() []*x509.Certificate {
	if ca.parent == nil {
		return nil
	}
	return ca.parent.chain()
}

// JWTSVID signs a well-formed JWT-SVID for id with the CA's default JWT key
// (ES256, typ JWT), expiring after ttl.
func (ca *CA) JWTSVID(tb testing.TB, id spiffeid.ID, audience []string, ttl time.Duration) string {
	tb.Helper()
	tok, err := ca.jwtSVID(id, audience, ttl)
	if err != nil {
		tb.Fatalf("sign JWT-SVID: %v", err)
	}
	return tok
}

func (ca *CA) jwtSVID(id spiffeid.ID, audience []string, ttl time.Duration) (string, error) {
	now := time.Now()
	h, err := json.Marshal(map[string]any{"alg": "ES256", "kid": ca.jwtKID, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(map[string]any{"sub": id.String(), "aud": audience, "exp": now.Add(ttl).Unix(), "iat": now.Unix()})
	if err != nil {
		return "", err
	}
	return signJWS(ca.jwtKeys[ca.jwtKID], "ES256", h, c)
}

// SignJWT builds a compact JWS from header and claims exactly as given (the
// header is not completed), signed by the JWT key kid using the header's
// alg: ES256/384/512, RS256/384/512, PS256/384/512, or "none" (no signature).
// Use it to craft tokens that a validator must refuse.
func (ca *CA) SignJWT(tb testing.TB, kid string, header, claims map[string]any) string {
	tb.Helper()
	alg, _ := header["alg"].(string)
	return SignJWS(tb, ca.jwtKeys[kid], alg, mustJSON(tb, header), mustJSON(tb, claims))
}

// SignJWS signs the raw header and claims JSON with key using alg and returns
// the compact serialization. alg "none" gives an empty signature; other algs
// need a matching ECDSA or RSA key (HS256 is SignHS256).
func SignJWS(tb testing.TB, key crypto.Signer, alg string, headerJSON, claimsJSON []byte) string {
	tb.Helper()
	tok, err := signJWS(key, alg, headerJSON, claimsJSON)
	if err != nil {
		tb.Fatalf("SignJWS: %v", err)
	}
	return tok
}

func signJWS(key crypto.Signer, alg string, headerJSON, claimsJSON []byte) (string, error) {
	input := b64(headerJSON) + "." + b64(claimsJSON)
	if alg == "none" {
		return input + ".", nil
	}
	var hash crypto.Hash
	switch alg {
	case "ES256", "RS256", "PS256":
		hash = crypto.SHA256
	case "ES384", "RS384", "PS384":
		hash = crypto.SHA384
	case "ES512", "RS512", "PS512":
		hash = crypto.SHA512
	default:
		return "", fmt.Errorf("unsupported alg %q", alg)
	}
	h := hash.New()
	h.Write([]byte(input))
	digest := h.Sum(nil)
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return "", err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
	case *rsa.PrivateKey:
		var err error
		if alg[0] == 'P' {
			sig, err = rsa.SignPSS(rand.Reader, k, hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, hash, digest)
		}
		if err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("unsupported key %T for %s", key, alg)
	}
	return input + "." + b64(sig), nil
}

// SignHS256 returns a compact JWS signed with HMAC-SHA256 over secret, for
// the key-confusion attack (an RSA public key used as the HMAC secret).
func SignHS256(tb testing.TB, secret []byte, header, claims map[string]any) string {
	tb.Helper()
	input := b64(mustJSON(tb, header)) + "." + b64(mustJSON(tb, claims))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

// NewECKey returns a new ECDSA P-256 key.
func NewECKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return k
}

// NewRSAKey returns a new 2048-bit RSA key.
func NewRSAKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return k
}

func createCert(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse certificate: %v", err)
	}
	return cert
}

func newSerial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatalf("serial: %v", err)
	}
	return n
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("json: %v", err)
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
