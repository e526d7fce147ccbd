package ca

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// jwtParts decodes the header and claims of a compact JWS without verifying.
func jwtParts(tb testing.TB, token string) (header, claims map[string]any) {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 { // JW-01: compact serialization, three parts
		tb.Fatalf("JW-01: token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		requireNoError(tb, err)
		requireNoError(tb, json.Unmarshal(raw, dst))
	}
	return header, claims
}

func jwtClaims(tb testing.TB, token string) map[string]any {
	tb.Helper()
	_, c := jwtParts(tb, token)
	return c
}

// jwtBundleOf is the published bundle's JWT authorities as go-spiffe sees them.
func jwtBundleOf(tb testing.TB, env *testEnv) *jwtbundle.Bundle {
	tb.Helper()
	b := jwtbundle.New(testTD)
	for _, a := range env.bundle(tb).JWTAuthorities {
		pub, err := x509.ParsePKIXPublicKey(a.PublicKey)
		requireNoError(tb, err)
		requireNoError(tb, b.AddJWTAuthority(a.KeyID, pub))
	}
	return b
}

// TestSignJWTSVID_Profile covers the issuance side of JW-01..JW-10.
func TestSignJWTSVID_Profile(t *testing.T) {
	for _, tt := range []struct {
		name    string
		keyType string
		alg     string
		issuer  string
	}{
		{name: "ok/ec-p256 ES256", alg: "ES256"},
		{name: "ok/ec-p384 ES384", keyType: KeyTypeECP384, alg: "ES384"},
		{name: "ok/rsa-2048 RS256", keyType: KeyTypeRSA2048, alg: "RS256"},
		{name: "ok/issuer set", alg: "ES256", issuer: "https://oidc.example.org"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, func(c *Config) { c.JWTKeyType, c.JWTIssuer = tt.keyType, tt.issuer })
			now := env.clock.Now()
			id := mustID(t, "spiffe://example.org/ns/default/sa/api")
			token, err := env.ca.SignJWTSVID(context.Background(), JWTSVIDParams{SPIFFEID: id, Audience: []string{"svc-a"}})
			requireNoError(t, err)

			header, claims := jwtParts(t, token) // JW-01: three base64url parts, no JSON serialization
			kid := env.ca.JWTAuthorities().Active.AuthorityID
			// JW-02, JW-05: only alg, kid and typ=JWT.
			if keys := slices.Sorted(maps.Keys(header)); !slices.Equal(keys, []string{"alg", "kid", "typ"}) {
				t.Fatalf("JW-02: header keys %v", keys)
			}
			if header["typ"] != "JWT" {
				t.Fatalf("JW-05: typ %v", header["typ"])
			}
			// JW-03: alg in the allowlist, and the one for the key type.
			if header["alg"] != tt.alg {
				t.Fatalf("JW-03: alg %v, want %s", header["alg"], tt.alg)
			}
			// JW-10: kid present and is the authority ID published in the bundle.
			if header["kid"] != kid || !bundleHasJWTKey(env.bundle(t), kid) {
				t.Fatalf("JW-10: kid %v not the published key %s", header["kid"], kid)
			}
			// JW-06, JW-07, JW-08: sub, aud as an array, exp; iat; iss only when configured.
			want := map[string]any{"sub": id.String(), "aud": []any{"svc-a"}, "exp": float64(now.Add(5 * time.Minute).Unix()), "iat": float64(now.Unix())}
			if tt.issuer != "" {
				want["iss"] = tt.issuer
			}
			if !jsonEqual(claims, want) {
				t.Fatalf("claims %v, want %v", claims, want)
			}
			// JW-09: the signature verifies with the bundle key named by kid.
			jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tt.alg)})
			requireNoError(t, err)
			keys := jwtBundleOf(t, env)
			pub, ok := keys.FindJWTAuthority(kid)
			if !ok {
				t.Fatal("JW-10: kid not in the bundle")
			}
			if _, err := jws.Verify(pub); err != nil {
				t.Fatalf("JW-09: %v", err)
			}
			// go-spiffe's validator accepts it (validator side of the same items).
			svid, err := jwtsvid.ParseAndValidate(token, keys, []string{"svc-a"})
			requireNoError(t, err)
			if svid.ID != id {
				t.Fatalf("validated ID %s", svid.ID)
			}
		})
	}
}

func jsonEqual(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestSignJWTSVID_Claims: audience handling (JW-07) and lifetime (JW-08).
func TestSignJWTSVID_Claims(t *testing.T) {
	for _, tt := range []struct {
		name    string
		caTTL   time.Duration
		cfgTTL  time.Duration
		advance time.Duration
		params  JWTSVIDParams
		aud     []any
		life    time.Duration
	}{
		{name: "ok/default 5m", params: JWTSVIDParams{Audience: []string{"a"}}, aud: []any{"a"}, life: 5 * time.Minute},
		{name: "ok/configured default", cfgTTL: time.Minute, params: JWTSVIDParams{Audience: []string{"a"}}, aud: []any{"a"}, life: time.Minute},
		{name: "ok/explicit ttl", params: JWTSVIDParams{Audience: []string{"a"}, TTL: 30 * time.Minute}, aud: []any{"a"}, life: 30 * time.Minute},
		{name: "ok/capped at key expiry", caTTL: time.Hour, advance: 58 * time.Minute, params: JWTSVIDParams{Audience: []string{"a"}}, aud: []any{"a"}, life: 2 * time.Minute},
		{name: "ok/several audiences, empty dropped", params: JWTSVIDParams{Audience: []string{"a", "", "b"}}, aud: []any{"a", "b"}, life: 5 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, func(c *Config) { c.CATTL, c.JWTSVIDTTL = tt.caTTL, tt.cfgTTL })
			env.clock.Add(tt.advance)
			tt.params.SPIFFEID = mustID(t, "spiffe://example.org/w")
			token, err := env.ca.SignJWTSVID(context.Background(), tt.params)
			requireNoError(t, err)
			claims := jwtClaims(t, token)
			if !jsonEqual(map[string]any{"aud": claims["aud"]}, map[string]any{"aud": tt.aud}) {
				t.Fatalf("JW-07: aud %v, want %v", claims["aud"], tt.aud)
			}
			if got := time.Unix(int64(claims["exp"].(float64)), 0).Sub(env.clock.Now()); got != tt.life {
				t.Fatalf("JW-08: lifetime %s, want %s", got, tt.life)
			}
		})
	}
}

// TestSignJWTSVID_Refusals: the same ID policy as X509-SVIDs, a mandatory
// audience (JW-07), and no signing before Init.
func TestSignJWTSVID_Refusals(t *testing.T) {
	env := newTestEnv(t, nil)
	for _, tt := range []struct {
		name   string
		params JWTSVIDParams
		err    error
		msg    string
	}{
		{name: "fail/zero ID", params: JWTSVIDParams{Audience: []string{"a"}}, err: ErrInvalidParams, msg: "SPIFFE ID is empty"},
		{name: "fail/foreign trust domain", params: JWTSVIDParams{SPIFFEID: mustID(t, "spiffe://other.org/w"), Audience: []string{"a"}}, err: ErrInvalidParams, msg: "is not a member of trust domain"},
		{name: "fail/root ID", params: JWTSVIDParams{SPIFFEID: testTD.ID(), Audience: []string{"a"}}, err: ErrInvalidParams, msg: "has no path"},
		{name: "fail/JW-07 no audience", params: JWTSVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w")}, err: ErrInvalidParams, msg: "audience is required"},
		{name: "fail/JW-07 only empty audiences", params: JWTSVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), Audience: []string{""}}, err: ErrInvalidParams, msg: "audience is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			token, err := env.ca.SignJWTSVID(context.Background(), tt.params)
			requireErr(t, err, tt.err, tt.msg)
			if token != "" {
				t.Fatal("refusal returned a token")
			}
		})
	}
	t.Run("fail/before Init", func(t *testing.T) {
		c, err := New(Config{TrustDomain: testTD, KeyManager: NewMemoryKeyManager(), Store: newTestStore(t)})
		requireNoError(t, err)
		_, err = c.SignJWTSVID(context.Background(), JWTSVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), Audience: []string{"a"}})
		requireErr(t, err, ErrNoActiveAuthority, "JWT key is not available for signing")
	})
}

// TestNewKeyID: 32 random alphanumeric characters, as SPIRE's key IDs.
func TestNewKeyID(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9]{32}$`)
	seen := map[string]bool{}
	for range 100 {
		kid, err := newKeyID()
		requireNoError(t, err)
		if !re.MatchString(kid) || seen[kid] {
			t.Fatalf("key ID %q malformed or repeated", kid)
		}
		seen[kid] = true
	}
}
