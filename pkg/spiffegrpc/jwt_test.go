package spiffegrpc_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

const audience = "spiffe://td-a/orchestrator"

// jwtFixture holds the keys and bundles of the JWT tests: td-a with an
// ECDSA and an RSA key, td-b with its own key, td-c unknown.
type jwtFixture struct {
	caA, caB, caC *spiffegrpctest.CA
	rsaKID        string
	bundles       *jwtbundle.Set
}

func newJWTFixture(t *testing.T) *jwtFixture {
	t.Helper()
	f := &jwtFixture{
		caA: spiffegrpctest.NewCA(t, tdA),
		caB: spiffegrpctest.NewCA(t, tdB),
		caC: spiffegrpctest.NewCA(t, tdC),
	}
	f.rsaKID = f.caA.AddJWTKey(t, spiffegrpctest.NewRSAKey(t))
	f.bundles = jwtbundle.NewSet(f.caA.JWTBundle(), f.caB.JWTBundle())
	return f
}

func (f *jwtFixture) header() map[string]any {
	return map[string]any{"alg": "ES256", "kid": f.caA.JWTKeyID(), "typ": "JWT"}
}

func baseClaims() map[string]any {
	now := time.Now()
	return map[string]any{"sub": clientID.String(), "aud": []string{audience}, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// jwtCase is one token and what validation must say about it.
type jwtCase struct {
	name       string
	token      func(t *testing.T, f *jwtFixture) string
	opts       []spiffegrpc.Option
	wantReason spiffegrpc.Reason // "" = valid
	wantMsg    string
}

func jwtCases() []jwtCase {
	return []jwtCase{
		{name: "ok/ES256", token: func(t *testing.T, f *jwtFixture) string {
			return f.caA.JWTSVID(t, clientID, []string{audience}, 5*time.Minute)
		}},
		{name: "ok/RS256", token: func(t *testing.T, f *jwtFixture) string {
			return f.caA.SignJWT(t, f.rsaKID, with(f.header(), "alg", "RS256", "kid", f.rsaKID), baseClaims())
		}},
		{name: "ok/PS384", token: func(t *testing.T, f *jwtFixture) string {
			return f.caA.SignJWT(t, f.rsaKID, with(f.header(), "alg", "PS384", "kid", f.rsaKID), baseClaims())
		}},
		{name: "ok/JW-05-typ-JOSE", token: func(t *testing.T, f *jwtFixture) string {
			return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "typ", "JOSE"), baseClaims())
		}},
		{name: "ok/JW-05-no-typ", token: func(t *testing.T, f *jwtFixture) string {
			return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "typ", nil), baseClaims())
		}},
		{name: "ok/JW-07-aud-string", token: func(t *testing.T, f *jwtFixture) string {
			return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "aud", audience))
		}},
		{name: "ok/JW-07-aud-among-several", token: func(t *testing.T, f *jwtFixture) string {
			return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "aud", []string{"spiffe://td-a/other", audience}))
		}},
		{name: "ok/JW-08-expired-within-leeway", token: func(t *testing.T, f *jwtFixture) string {
			return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "exp", time.Now().Add(-10*time.Second).Unix()))
		}},
		{name: "ok/other-trust-domain-own-key", token: func(t *testing.T, f *jwtFixture) string {
			return f.caB.JWTSVID(t, spiffeid.RequireFromString("spiffe://td-b/x"), []string{audience}, time.Minute)
		}},

		// JW-01: only JWS compact serialization.
		{name: "fail/JW-01-json-serialization", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "compact serialization",
			token: func(t *testing.T, f *jwtFixture) string {
				p := strings.Split(f.caA.JWTSVID(t, clientID, []string{audience}, time.Minute), ".")
				b, _ := json.Marshal(map[string]string{"protected": p[0], "payload": p[1], "signature": p[2]})
				return string(b)
			}},
		{name: "fail/JW-01-flattened-json-with-dots", wantReason: spiffegrpc.ReasonMalformed,
			token: func(t *testing.T, f *jwtFixture) string {
				p := strings.Split(f.caA.JWTSVID(t, clientID, []string{audience}, time.Minute), ".")
				return `{"protected":"` + p[0] + `","payload":".` + p[1] + `.","signature":"` + p[2] + `"}`
			}},
		{name: "fail/JW-01-four-parts", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "compact serialization",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.JWTSVID(t, clientID, []string{audience}, time.Minute) + ".e30"
			}},
		{name: "fail/JW-01-jwe-five-parts", wantReason: spiffegrpc.ReasonMalformed,
			token: func(*testing.T, *jwtFixture) string { return "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d" }},
		{name: "fail/garbage", wantReason: spiffegrpc.ReasonMalformed,
			token: func(*testing.T, *jwtFixture) string { return "not a token" }},
		{name: "fail/oversized", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "longer than",
			token: func(*testing.T, *jwtFixture) string { return strings.Repeat("a", 17<<10) }},

		// JW-02: no header other than alg, kid, typ.
		{name: "fail/JW-02-jku", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `JOSE header "jku"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "jku", "https://evil.example/jwks"), baseClaims())
			}},
		{name: "fail/JW-02-x5u", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `"x5u"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "x5u", "https://evil.example/c.pem"), baseClaims())
			}},
		{name: "fail/JW-02-jwk", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `"jwk"`,
			token: func(t *testing.T, f *jwtFixture) string {
				jwk := jose.JSONWebKey{Key: f.caA.JWTKey(f.caA.JWTKeyID()).Public(), KeyID: f.caA.JWTKeyID()}
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "jwk", jwk), baseClaims())
			}},
		{name: "fail/JW-02-crit", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `"crit"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "crit", []string{"exp"}), baseClaims())
			}},
		{name: "fail/JW-02-cty", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `"cty"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "cty", "JWT"), baseClaims())
			}},
		{name: "fail/JW-02-private-header", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `"x-tenant"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "x-tenant", "a"), baseClaims())
			}},
		{name: "fail/JW-02-duplicate-alg", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "duplicate member",
			token: func(t *testing.T, f *jwtFixture) string {
				h := `{"alg":"none","alg":"ES256","kid":"` + f.caA.JWTKeyID() + `"}`
				return spiffegrpctest.SignJWS(t, f.caA.JWTKey(f.caA.JWTKeyID()), "ES256", []byte(h), mustJSON(t, baseClaims()))
			}},

		// JW-03, JW-04: alg allowlist, checked before anything else.
		{name: "fail/JW-03-alg-none", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `alg "none"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "alg", "none"), baseClaims())
			}},
		{name: "fail/JW-03-alg-none-before-bad-header", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `alg "none"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "alg", "none", "jku", "x", "typ", "bad"), baseClaims())
			}},
		{name: "fail/JW-03-EdDSA", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `alg "EdDSA"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return spiffegrpctest.SignJWS(t, nil, "none", mustJSON(t, with(f.header(), "alg", "EdDSA")), mustJSON(t, baseClaims())) + "c2ln"
			}},
		{name: "fail/JW-03-unknown-alg", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `alg "ES256K"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return spiffegrpctest.SignJWS(t, nil, "none", mustJSON(t, with(f.header(), "alg", "ES256K")), mustJSON(t, baseClaims())) + "c2ln"
			}},
		{name: "fail/JW-03-missing-alg", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "no alg",
			token: func(t *testing.T, f *jwtFixture) string {
				return spiffegrpctest.SignJWS(t, nil, "none", mustJSON(t, with(f.header(), "alg", nil)), mustJSON(t, baseClaims())) + "c2ln"
			}},
		{name: "fail/JW-04-HS256-with-RSA-public-key-PEM", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `alg "HS256"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return spiffegrpctest.SignHS256(t, rsaPublicPEM(t, f), with(f.header(), "alg", "HS256", "kid", f.rsaKID), baseClaims())
			}},
		{name: "fail/JW-04-HS256-with-RSA-public-key-DER", wantReason: spiffegrpc.ReasonMalformed, wantMsg: `alg "HS256"`,
			token: func(t *testing.T, f *jwtFixture) string {
				der, _ := x509.MarshalPKIXPublicKey(f.caA.JWTKey(f.rsaKID).Public())
				return spiffegrpctest.SignHS256(t, der, with(f.header(), "alg", "HS256", "kid", f.rsaKID), baseClaims())
			}},

		// JW-05
		{name: "fail/JW-05-typ-other", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "typ must be JWT or JOSE",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "typ", "at+jwt"), baseClaims())
			}},
		{name: "fail/JW-05-typ-not-string", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "typ must be JWT or JOSE",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "typ", 1), baseClaims())
			}},

		// JW-06: sub under the strict SPIFFE ID parser.
		{name: "fail/JW-06-missing-sub", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "no sub",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "sub", nil))
			}},
		{name: "fail/JW-06-sub-not-spiffe", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "sub is not a SPIFFE ID",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "sub", "https://td-a/x"))
			}},
		{name: "fail/JW-06-sub-uppercase-trust-domain", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "sub is not a SPIFFE ID",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "sub", "spiffe://TD-A/x"))
			}},
		{name: "fail/JW-06-sub-percent-encoded", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "sub is not a SPIFFE ID",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "sub", "spiffe://td-a/%41"))
			}},
		{name: "fail/JW-06-sub-root-id", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "has no path",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "sub", "spiffe://td-a"))
			}},

		// JW-07: aud present and containing ours.
		{name: "fail/JW-07-missing-aud", wantReason: spiffegrpc.ReasonWrongAudience, wantMsg: "no aud",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "aud", nil))
			}},
		{name: "fail/JW-07-empty-aud", wantReason: spiffegrpc.ReasonWrongAudience, wantMsg: "no aud",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "aud", []string{}))
			}},
		{name: "fail/JW-07-wrong-aud", wantReason: spiffegrpc.ReasonWrongAudience, wantMsg: "not in token aud",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.JWTSVID(t, clientID, []string{"spiffe://td-a/service-registry"}, time.Minute)
			}},
		{name: "fail/T9-multi-audience-replay-with-single-audience", wantReason: spiffegrpc.ReasonWrongAudience, wantMsg: "2 audiences",
			opts: []spiffegrpc.Option{spiffegrpc.WithSingleAudience()},
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.JWTSVID(t, clientID, []string{"spiffe://td-a/service-registry", audience}, time.Minute)
			}},

		// JW-08: exp required, expired beyond the leeway refused.
		{name: "fail/JW-08-missing-exp", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "no exp",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "exp", nil))
			}},
		{name: "fail/JW-08-exp-not-number", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "exp is not a number",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "exp", "tomorrow"))
			}},
		{name: "fail/JW-08-expired", wantReason: spiffegrpc.ReasonExpired, wantMsg: "expired at",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "exp", time.Now().Add(-time.Hour).Unix()))
			}},
		{name: "fail/JW-08-expired-beyond-leeway", wantReason: spiffegrpc.ReasonExpired,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "exp", time.Now().Add(-spiffegrpc.JWTLeeway-5*time.Second).Unix()))
			}},
		{name: "fail/nbf-in-future", wantReason: spiffegrpc.ReasonExpired, wantMsg: "not valid yet",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "nbf", time.Now().Add(time.Hour).Unix()))
			}},

		// JW-09: signature.
		{name: "fail/JW-09-tampered-claims", wantReason: spiffegrpc.ReasonBadSignature,
			token: func(t *testing.T, f *jwtFixture) string {
				p := strings.Split(f.caA.JWTSVID(t, clientID, []string{audience}, time.Minute), ".")
				evil := f.caA.SignJWT(t, f.caA.JWTKeyID(), f.header(), with(baseClaims(), "sub", "spiffe://td-a/admin"))
				return p[0] + "." + strings.Split(evil, ".")[1] + "." + p[2]
			}},
		{name: "fail/JW-09-empty-signature", wantReason: spiffegrpc.ReasonBadSignature,
			token: func(t *testing.T, f *jwtFixture) string {
				p := strings.Split(f.caA.JWTSVID(t, clientID, []string{audience}, time.Minute), ".")
				return p[0] + "." + p[1] + "."
			}},
		{name: "fail/JW-09-RS256-header-on-EC-key", wantReason: spiffegrpc.ReasonBadSignature,
			token: func(t *testing.T, f *jwtFixture) string {
				return spiffegrpctest.SignJWS(t, f.caA.JWTKey(f.rsaKID), "RS256", mustJSON(t, with(f.header(), "alg", "RS256")), mustJSON(t, baseClaims()))
			}},

		// JW-10: kid required.
		{name: "fail/JW-10-missing-kid", wantReason: spiffegrpc.ReasonMalformed, wantMsg: "no kid",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "kid", nil), baseClaims())
			}},
		{name: "fail/unknown-kid", wantReason: spiffegrpc.ReasonUnknownKey, wantMsg: "no JWT authority",
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caA.SignJWT(t, f.caA.JWTKeyID(), with(f.header(), "kid", "retired-key"), baseClaims())
			}},
		{name: "fail/unknown-key-of-same-trust-domain", wantReason: spiffegrpc.ReasonUnknownKey,
			token: func(t *testing.T, f *jwtFixture) string {
				rogue := spiffegrpctest.NewCA(t, tdA)
				return rogue.JWTSVID(t, clientID, []string{audience}, time.Minute)
			}},

		// JW-12: the key comes from the bundle of sub's trust domain.
		{name: "fail/JW-12-td-b-key-signs-td-a-sub", wantReason: spiffegrpc.ReasonUnknownKey,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caB.SignJWT(t, f.caB.JWTKeyID(), with(f.header(), "kid", f.caB.JWTKeyID()), baseClaims())
			}},
		{name: "fail/JW-12-td-b-key-with-td-a-kid", wantReason: spiffegrpc.ReasonBadSignature,
			token: func(t *testing.T, f *jwtFixture) string {
				return spiffegrpctest.SignJWS(t, f.caB.JWTKey(f.caB.JWTKeyID()), "ES256", mustJSON(t, f.header()), mustJSON(t, baseClaims()))
			}},
		{name: "fail/JW-12-sub-in-unknown-trust-domain", wantReason: spiffegrpc.ReasonWrongTrustDomain, wantMsg: `no JWT bundle for trust domain "td-c"`,
			token: func(t *testing.T, f *jwtFixture) string {
				return f.caC.JWTSVID(t, spiffeid.RequireFromString("spiffe://td-c/x"), []string{audience}, time.Minute)
			}},
	}
}

func rsaPublicPEM(t *testing.T, f *jwtFixture) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(f.caA.JWTKey(f.rsaKID).Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWTAuth_Validate(t *testing.T) {
	f := newJWTFixture(t)
	for _, tt := range jwtCases() {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := spiffegrpc.NewJWTAuth(f.bundles, audience, spiffegrpc.AuthorizeAny(), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			token := tt.token(t, f)
			id, err := auth.Validate(token)
			// Differential check against go-spiffe: everything we accept, it
			// accepts; what it accepts and we refuse is our addition.
			_, gsErr := jwtsvid.ParseAndValidate(token, f.bundles, []string{audience})
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if id.IsZero() {
					t.Fatal("Validate returned no ID")
				}
				if gsErr != nil {
					t.Errorf("go-spiffe refuses a token we accept: %v", gsErr)
				}
				return
			}
			if gsErr == nil {
				t.Logf("go-spiffe accepts this token; spiffegrpc refuses it")
			}
			var ae *spiffegrpc.AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *AuthError", err)
			}
			if ae.Reason != tt.wantReason {
				t.Errorf("reason = %s (%v), want %s", ae.Reason, err, tt.wantReason)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if !id.IsZero() {
				t.Errorf("Validate returned ID %s with an error", id)
			}
			assertNoToken(t, err.Error(), token) // T9
		})
	}
}

// assertNoToken fails if text contains the token or any of its parts (T9).
func assertNoToken(t *testing.T, text, token string) {
	t.Helper()
	if len(token) >= 16 && strings.Contains(text, token) {
		t.Errorf("token appears in %q", text)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 16 && strings.Contains(text, part) {
			t.Errorf("token segment %q... appears in output", part[:16])
		}
	}
}

// JW-11: only jwt-svid keys validate JWT-SVIDs; an x509-svid key that shares
// the token's kid is not used.
func TestJWTAuth_JW11_X509KeyNotUsedForJWT(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	x509JWK, err := json.Marshal(jose.JSONWebKey{Key: ca.Key().Public(), KeyID: "shared-kid", Use: "x509-svid", Certificates: []*x509.Certificate{ca.Cert()}})
	if err != nil {
		t.Fatal(err)
	}
	jwtJWK, err := json.Marshal(jose.JSONWebKey{Key: ca.JWTKey(ca.JWTKeyID()).Public(), KeyID: ca.JWTKeyID(), Use: "jwt-svid"})
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"keys":[` + string(x509JWK) + `,` + string(jwtJWK) + `]}`
	sb, err := spiffebundle.Parse(tdA, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := spiffegrpc.NewJWTAuth(sb, audience, spiffegrpc.AuthorizeAny())
	if err != nil {
		t.Fatal(err)
	}
	// Signed by the X.509 CA key under the x509-svid entry's kid.
	token := spiffegrpctest.SignJWS(t, ca.Key(), "ES256",
		mustJSON(t, map[string]any{"alg": "ES256", "kid": "shared-kid", "typ": "JWT"}), mustJSON(t, baseClaims()))
	_, err = auth.Validate(token)
	var ae *spiffegrpc.AuthError
	if !errors.As(err, &ae) || ae.Reason != spiffegrpc.ReasonUnknownKey {
		t.Fatalf("err = %v, want reason unknown_key", err)
	}
	// The jwt-svid key of the same bundle works.
	if _, err := auth.Validate(ca.JWTSVID(t, clientID, []string{audience}, time.Minute)); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
}

// The validated-token cache never outlives the token or its key.
func TestJWTAuth_CacheRechecksExpiryAndKey(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	bundle := ca.JWTBundle()
	now := time.Now()
	clock := func() time.Time { return now }
	auth, err := spiffegrpc.NewJWTAuth(bundle, audience, spiffegrpc.AuthorizeAny(), spiffegrpc.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	token := ca.JWTSVID(t, clientID, []string{audience}, time.Minute)
	for range 2 { // second time from the cache
		if _, err := auth.Validate(token); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	}

	t.Run("fail/expired-after-caching", func(t *testing.T) {
		now = now.Add(time.Minute + spiffegrpc.JWTLeeway + time.Second)
		defer func() { now = now.Add(-time.Minute - spiffegrpc.JWTLeeway - time.Second) }()
		_, err := auth.Validate(token)
		wantReason(t, err, spiffegrpc.ReasonExpired)
	})
	t.Run("ok/still-cached-within-lifetime", func(t *testing.T) {
		if _, err := auth.Validate(token); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	})
	t.Run("fail/key-removed-from-bundle", func(t *testing.T) {
		bundle.RemoveJWTAuthority(ca.JWTKeyID())
		_, err := auth.Validate(token)
		wantReason(t, err, spiffegrpc.ReasonUnknownKey)
	})
	t.Run("fail/key-replaced-under-same-kid", func(t *testing.T) {
		if err := bundle.AddJWTAuthority(ca.JWTKeyID(), spiffegrpctest.NewECKey(t).Public()); err != nil {
			t.Fatal(err)
		}
		_, err := auth.Validate(token)
		wantReason(t, err, spiffegrpc.ReasonBadSignature)
	})
}

func TestJWTAuth_NoCache(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	bundle := ca.JWTBundle()
	auth, err := spiffegrpc.NewJWTAuth(bundle, audience, spiffegrpc.AuthorizeAny(), spiffegrpc.WithJWTCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	token := ca.JWTSVID(t, clientID, []string{audience}, time.Minute)
	if _, err := auth.Validate(token); err != nil {
		t.Fatal(err)
	}
	bundle.RemoveJWTAuthority(ca.JWTKeyID())
	_, err = auth.Validate(token)
	wantReason(t, err, spiffegrpc.ReasonUnknownKey)
}

func TestJWTAuth_CacheBounded(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	auth, err := spiffegrpc.NewJWTAuth(ca.JWTBundle(), audience, spiffegrpc.AuthorizeAny(), spiffegrpc.WithJWTCacheSize(4))
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for i := range 20 {
		tok := ca.JWTSVID(t, spiffeid.RequireFromString("spiffe://td-a/w/"+string(rune('a'+i))), []string{audience}, time.Minute)
		tokens = append(tokens, tok)
		if _, err := auth.Validate(tok); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range tokens { // evicted or not, every token stays valid
		if _, err := auth.Validate(tok); err != nil {
			t.Fatal(err)
		}
	}
}

func wantReason(t *testing.T, err error, r spiffegrpc.Reason) {
	t.Helper()
	var ae *spiffegrpc.AuthError
	if !errors.As(err, &ae) || ae.Reason != r {
		t.Fatalf("err = %v, want reason %s", err, r)
	}
}

func TestNewJWTAuth_RequiresArguments(t *testing.T) {
	b := spiffegrpctest.NewCA(t, tdA).JWTBundle()
	for _, tt := range []struct {
		name    string
		bundles jwtbundle.Source
		aud     string
		authz   spiffegrpc.Authorizer
		want    string
	}{
		{"fail/nil-bundles", nil, audience, spiffegrpc.AuthorizeAny(), "nil JWT bundle source"},
		{"fail/empty-audience", b, "", spiffegrpc.AuthorizeAny(), "empty audience"},
		{"fail/nil-authorizer", b, audience, nil, "nil authorizer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := spiffegrpc.NewJWTAuth(tt.bundles, tt.aud, tt.authz)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
