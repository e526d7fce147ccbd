package ca

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// spiffeBundleOf renders a stored bundle in SPIFFE bundle format, as the
// bundle endpoint and "bundle show -format spiffe" publish it.
func spiffeBundleOf(tb testing.TB, b *datastore.Bundle) *spiffebundle.Bundle {
	tb.Helper()
	sb := spiffebundle.New(testTD)
	for _, a := range b.X509Authorities {
		c, err := x509.ParseCertificate(a.Certificate)
		requireNoError(tb, err)
		sb.AddX509Authority(c)
	}
	for _, a := range b.JWTAuthorities {
		pub, err := x509.ParsePKIXPublicKey(a.PublicKey)
		requireNoError(tb, err)
		requireNoError(tb, sb.AddJWTAuthority(a.KeyID, pub))
	}
	sb.SetSequenceNumber(uint64(b.SequenceNumber))
	return sb
}

// TestPublishedBundle checks the authorities the CA publishes, rendered as
// a SPIFFE bundle: TB-01, TB-02, TB-04, TB-06, X5-14, JW-10.
func TestPublishedBundle(t *testing.T) {
	env := newTestEnv(t, func(c *Config) { c.JWTKeyType = KeyTypeRSA2048 })
	ctx := context.Background()
	_, err := env.ca.PrepareX509Authority(ctx)
	requireNoError(t, err)
	_, err = env.ca.PrepareJWTAuthority(ctx)
	requireNoError(t, err)
	stored := env.bundle(t)
	data, err := spiffeBundleOf(t, stored).Marshal()
	requireNoError(t, err)

	var doc struct {
		Keys     []map[string]any `json:"keys"`
		Sequence *json.Number     `json:"spiffe_sequence"`
	}
	requireNoError(t, json.Unmarshal(data, &doc))
	if doc.Keys == nil { // TB-04
		t.Fatal("TB-04: keys missing")
	}
	if doc.Sequence == nil || strings.ContainsAny(doc.Sequence.String(), ".e") { // TB-02
		t.Fatalf("TB-02: spiffe_sequence %v", doc.Sequence)
	}
	var x509Keys, jwtKeys int
	for _, k := range doc.Keys {
		if k["kty"] == nil || k["kty"] == "" || k["use"] == nil { // TB-06
			t.Fatalf("TB-06: JWK without kty or use: %v", k)
		}
		switch k["use"] {
		case "x509-svid":
			x509Keys++
			if x5c, _ := k["x5c"].([]any); len(x5c) != 1 { // X5-14
				t.Fatalf("X5-14: x5c has %d certificates", len(x5c))
			}
			if _, ok := k["kid"]; ok {
				t.Fatal("X5-14: x509-svid JWK with kid")
			}
		case "jwt-svid":
			jwtKeys++
			if kid, _ := k["kid"].(string); kid == "" { // JW-10
				t.Fatal("JW-10: jwt-svid JWK without kid")
			}
		default:
			t.Fatalf("TB-06: unknown use %v", k["use"])
		}
	}
	if x509Keys != 2 || jwtKeys != 2 {
		t.Fatalf("bundle has %d X.509 and %d JWT authorities, want 2 and 2", x509Keys, jwtKeys)
	}
	// TB-01: a consumer needs only "keys".
	only, err := json.Marshal(map[string]any{"keys": doc.Keys})
	requireNoError(t, err)
	parsed, err := spiffebundle.Parse(testTD, only)
	requireNoError(t, err)
	if len(parsed.X509Authorities()) != 2 || len(parsed.JWTAuthorities()) != 2 {
		t.Fatal("TB-01: bundle with only keys does not parse to the same authorities")
	}
}

// TestPrepare_PublishesBeforeUse (FD-01): when the new authority reaches the
// bundle, the CA still signs with the previous one.
func TestPrepare_PublishesBeforeUse(t *testing.T) {
	env := newTestEnv(t, nil)
	ctx := context.Background()
	active := env.ca.signX509.Load()
	activeJWT := env.ca.signJWT.Load()
	var published int
	env.store.onAppend = func(*datastore.Bundle) {
		published++
		if env.ca.signX509.Load() != active || env.ca.signJWT.Load() != activeJWT {
			t.Error("FD-01: the signing authority changed before the new one was published")
		}
	}
	p, err := env.ca.PrepareX509Authority(ctx)
	requireNoError(t, err)
	pj, err := env.ca.PrepareJWTAuthority(ctx)
	requireNoError(t, err)
	if published != 2 {
		t.Fatalf("%d bundle appends, want one per prepared authority", published)
	}
	_, err = env.ca.ActivateX509Authority(ctx, p.AuthorityID)
	requireNoError(t, err)
	_, err = env.ca.ActivateJWTAuthority(ctx, pj.AuthorityID)
	requireNoError(t, err)
	if published != 2 {
		t.Fatal("activation must not need another publication")
	}
	b := env.bundle(t)
	if !bundleHasX509(b, env.ca.signX509.Load().cert.Raw) || !bundleHasJWTKey(b, pj.AuthorityID) {
		t.Fatal("FD-01: active authorities are not in the bundle")
	}
}

// TestLogs_NoKeyMaterial (T15): a full rotation cycle logs authority IDs,
// never private keys.
func TestLogs_NoKeyMaterial(t *testing.T) {
	env := newTestEnv(t, nil)
	ctx := context.Background()
	p, err := env.ca.PrepareX509Authority(ctx)
	requireNoError(t, err)
	_, err = env.ca.ActivateX509Authority(ctx, p.AuthorityID)
	requireNoError(t, err)
	logs := env.logs.String()
	if !strings.Contains(logs, p.AuthorityID) {
		t.Fatal("logs do not name the authority")
	}
	for _, id := range []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A"} {
		key, err := env.km.GetKey(ctx, id)
		requireNoError(t, err)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		requireNoError(t, err)
		for _, enc := range []string{base64.StdEncoding.EncodeToString(der), hex.EncodeToString(der), "PRIVATE KEY"} {
			if strings.Contains(logs, enc[:min(len(enc), 40)]) {
				t.Fatalf("T15: logs contain key material of %s", id)
			}
		}
	}
}
