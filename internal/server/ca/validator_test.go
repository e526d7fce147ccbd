package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// The validator-side items are owned by the middleware; these tests check
// that what this CA issues and publishes meets them from the issuing side.

// TestIssued_X5_02_X5_06: a validator rejects a chain whose leaf has two
// URI SANs (X5-02) or is our CA certificate (X5-06); our issued SVID passes.
func TestIssued_X5_02_X5_06(t *testing.T) {
	env := newTestEnv(t, nil)
	key := newECKey(t)
	slot := env.ca.signX509.Load()
	bundle := x509BundleOf(t, env)
	now := env.clock.Now()

	// X5-06: the CA certificate presented as a leaf.
	if _, _, err := x509svid.Verify([]*x509.Certificate{slot.cert}, bundle, x509svid.WithTime(now)); err == nil {
		t.Fatal("X5-06: the CA certificate verified as an SVID")
	}
	// X5-02: the same CA key signing a leaf with two URI SANs (not something
	// SignX509SVID can produce: it takes one ID).
	tmpl := &x509.Certificate{
		SerialNumber: bigOne(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		URIs: []*url.URL{mustID(t, "spiffe://example.org/a").URL(), mustID(t, "spiffe://example.org/b").URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, slot.cert, &key.PublicKey, slot.signer)
	requireNoError(t, err)
	two, err := x509.ParseCertificate(der)
	requireNoError(t, err)
	if _, _, err := x509svid.Verify([]*x509.Certificate{two}, bundle, x509svid.WithTime(now)); err == nil {
		t.Fatal("X5-02: a leaf with two URI SANs verified")
	}
	chain := signSVID(t, env.ca, "spiffe://example.org/a", &key.PublicKey)
	if _, _, err := x509svid.Verify(chain, bundle, x509svid.WithTime(now)); err != nil {
		t.Fatalf("X5-02: our SVID: %v", err)
	}
}

// TestIssued_JW04: our tokens use an allowlisted alg, so a validator that
// checks alg first accepts them, while an HS256 token under our kid, keyed
// with our public key bytes (key confusion), is refused.
func TestIssued_JW04(t *testing.T) {
	env := newTestEnv(t, nil)
	allow := []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512}
	token, err := env.ca.SignJWTSVID(context.Background(), JWTSVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), Audience: []string{"a"}})
	requireNoError(t, err)
	if _, err := jose.ParseSigned(token, allow); err != nil {
		t.Fatalf("JW-04: our token's alg is not in the allowlist: %v", err)
	}
	kid := env.ca.JWTAuthorities().Active.AuthorityID
	pub := env.bundle(t).JWTAuthorities[0].PublicKey
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: pub, KeyID: kid}}, new(jose.SignerOptions).WithType("JWT"))
	requireNoError(t, err)
	forged, err := jwt.Signed(hs).Claims(map[string]any{"sub": "spiffe://example.org/w", "aud": []string{"a"}, "exp": time.Now().Add(time.Minute).Unix()}).Serialize()
	requireNoError(t, err)
	if _, err := jwtsvid.ParseAndValidate(forged, jwtBundleOf(t, env), []string{"a"}); err == nil {
		t.Fatal("JW-04: an HS256 token keyed with our public key validated")
	}
}

// TestPublishedBundle_TB03_TB05: the CA sets no refresh hint, so none or an
// integer is published (TB-03); and once an authority is revoked, the
// SVIDs it signed stop verifying against the published bundle, as a bundle
// without usable keys invalidates everything (TB-05).
func TestPublishedBundle_TB03_TB05(t *testing.T) {
	env := newTestEnv(t, nil)
	ctx := context.Background()
	data, err := spiffeBundleOf(t, env.bundle(t)).Marshal()
	requireNoError(t, err)
	var doc map[string]json.RawMessage
	requireNoError(t, json.Unmarshal(data, &doc))
	if hint, ok := doc["spiffe_refresh_hint"]; ok {
		var n int64
		if err := json.Unmarshal(hint, &n); err != nil {
			t.Fatalf("TB-03: refresh hint %s is not an integer", hint)
		}
	}

	key := newECKey(t)
	old := signSVID(t, env.ca, "spiffe://example.org/w", &key.PublicKey)
	first := env.ca.X509Authorities().Active.AuthorityID
	p, err := env.ca.PrepareX509Authority(ctx)
	requireNoError(t, err)
	_, err = env.ca.ActivateX509Authority(ctx, p.AuthorityID)
	requireNoError(t, err)
	_, err = env.ca.TaintX509Authority(ctx, first)
	requireNoError(t, err)
	_, err = env.ca.RevokeX509Authority(ctx, first)
	requireNoError(t, err)
	now := env.clock.Now()
	if _, _, err := x509svid.Verify(old, x509BundleOf(t, env), x509svid.WithTime(now)); err == nil {
		t.Fatal("TB-05: an SVID of a revoked authority still verifies against the published bundle")
	}
	if _, _, err := x509svid.Verify(old, x509bundle.New(testTD), x509svid.WithTime(now)); err == nil {
		t.Fatal("TB-05: an SVID verified against an empty bundle")
	}
	fresh := signSVID(t, env.ca, "spiffe://example.org/w", &key.PublicKey)
	if _, _, err := x509svid.Verify(fresh, x509BundleOf(t, env), x509svid.WithTime(now)); err != nil {
		t.Fatalf("new SVID: %v", err)
	}
}
