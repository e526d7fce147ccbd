package workloadapi_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"

	"github.com/neural-hive/hive-identity/internal/agent/cache/cachetest"
)

// TestJWTSource_WA01_WA10: WA-01, WA-10. go-spiffe's JWTSource fetches a JWT-SVID for
// the audience and validates it with the JWT bundles of the same socket.
func TestJWTSource_WA01_WA10(t *testing.T) {
	e := newEnv(t)
	e.addIdentity(entry("e1", "spiffe://neural-hive.local/w", mySelector()))
	ctx := testCtx(t)
	src, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(e.addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	svid, err := src.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "orchestrator"})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://neural-hive.local/w" {
		t.Fatalf("sub = %s", svid.ID)
	}
	if _, err := jwtsvid.ParseAndValidate(svid.Marshal(), src, []string{"orchestrator"}); err != nil {
		t.Fatalf("token does not validate against the served JWT bundle: %v", err)
	}
	// Served from the cache the second time.
	if _, err := src.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "orchestrator"}); err != nil || e.signer.Calls() != 1 {
		t.Fatalf("second fetch: %v, signer calls %d", err, e.signer.Calls())
	}
}

// TestFetchJWTSVID_WA10_WA13: WA-10, WA-13.
func TestFetchJWTSVID_WA10_WA13(t *testing.T) {
	e := newEnv(t)
	e.addIdentity(
		entry("a", "spiffe://neural-hive.local/a", mySelector()),
		entry("b", "spiffe://neural-hive.local/b", mySelector()),
		entry("c", "spiffe://neural-hive.local/c", otherSelector()),
	)
	c := e.client()
	for _, tt := range []struct {
		name     string
		req      *workload.JWTSVIDRequest
		code     codes.Code
		msg      string
		wantSubs []string
	}{
		{name: "ok/all identities", req: &workload.JWTSVIDRequest{Audience: []string{"x"}},
			wantSubs: []string{"spiffe://neural-hive.local/a", "spiffe://neural-hive.local/b"}},
		{name: "ok/one identity", req: &workload.JWTSVIDRequest{Audience: []string{"x", "y"}, SpiffeId: "spiffe://neural-hive.local/b"},
			wantSubs: []string{"spiffe://neural-hive.local/b"}},
		{name: "fail/no audience", req: &workload.JWTSVIDRequest{}, code: codes.InvalidArgument, msg: "audience must be specified"},
		{name: "fail/invalid spiffe id", req: &workload.JWTSVIDRequest{Audience: []string{"x"}, SpiffeId: "spiffe://bad td/x"},
			code: codes.InvalidArgument, msg: "invalid requested SPIFFE ID"},
		{name: "fail/not authorized", req: &workload.JWTSVIDRequest{Audience: []string{"x"}, SpiffeId: "spiffe://neural-hive.local/c"},
			code: codes.PermissionDenied, msg: "no identity issued"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.FetchJWTSVID(withHeader(testCtx(t)), tt.req)
			if tt.code != codes.OK {
				wantStatus(t, err, tt.code, tt.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Svids) != len(tt.wantSubs) {
				t.Fatalf("svids = %d, want %d", len(resp.Svids), len(tt.wantSubs))
			}
			for i, s := range resp.Svids {
				parsed, err := jwtsvid.ParseInsecure(s.Svid, tt.req.Audience)
				if err != nil || parsed.ID.String() != tt.wantSubs[i] || s.SpiffeId != tt.wantSubs[i] {
					t.Fatalf("svid %d: %v %v", i, parsed, err)
				}
			}
		})
	}
}

// TestFetchJWTSVIDSignerDown: the server is unreachable and nothing is
// cached: Unavailable.
func TestFetchJWTSVIDSignerDown(t *testing.T) {
	e := newEnv(t)
	e.addIdentity(entry("a", "spiffe://neural-hive.local/a", mySelector()))
	e.signer.SetError(errors.New("connection refused"))
	_, err := e.client().FetchJWTSVID(withHeader(testCtx(t)), &workload.JWTSVIDRequest{Audience: []string{"x"}})
	wantStatus(t, err, codes.Unavailable, "could not fetch JWT-SVID")
}

// TestFetchJWTBundles_WA11: WA-11. JWKS of the own and federated trust domains,
// with only the JWT-SVID keys (no x5c, no X.509 authority), in SPIRE's
// standard-JWKS layout.
func TestFetchJWTBundles_WA11(t *testing.T) {
	e := newEnv(t)
	pca := cachetest.NewCA(t, partner)
	fed := entry("e1", "spiffe://neural-hive.local/w", mySelector())
	fed.FederatesWith = []spiffeid.TrustDomain{partner}
	e.addIdentity(fed)
	e.cache.SetBundle(pca.Bundle())

	stream, err := e.client().FetchJWTBundles(withHeader(testCtx(t)), &workload.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Bundles) != 2 {
		t.Fatalf("bundles = %d, want own and partner", len(resp.Bundles))
	}
	own := resp.Bundles["spiffe://neural-hive.local"]
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(own, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0]["kid"] != e.ca.JWTKeyID {
		t.Fatalf("own JWKS keys = %v", set.Keys)
	}
	for _, k := range set.Keys {
		if _, ok := k["x5c"]; ok {
			t.Fatal("JWKS carries an X.509 key")
		}
		if _, ok := k["use"]; ok {
			t.Fatal("standard JWKS has no use")
		}
	}
	if !strings.HasPrefix(string(own), "{\n    \"keys\": [\n        {\n            \"kty\": \"EC\",\n            \"kid\": ") {
		t.Fatalf("JWKS layout differs from SPIRE's:\n%s", own)
	}
	// go-spiffe parses it.
	client, err := workloadapi.New(testCtx(t), workloadapi.WithAddr(e.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	bundles, err := client.FetchJWTBundles(testCtx(t))
	if err != nil || !bundles.Has(partner) || !bundles.Has(td) {
		t.Fatalf("go-spiffe FetchJWTBundles: %v", err)
	}
}

// TestValidateJWTSVID_WA12_JW12: WA-12, JW-12 and the JWT-SVID checks the validator
// owns (JW-01..JW-08, JW-11), with SPIRE's messages.
func TestValidateJWTSVID_WA12_JW12(t *testing.T) {
	e := newEnv(t, withForeignClaims("team"))
	pca := cachetest.NewCA(t, partner)
	otherTD := spiffeid.RequireTrustDomainFromString("other.example")
	oca := cachetest.NewCA(t, otherTD)
	fed := entry("e1", "spiffe://neural-hive.local/w", mySelector())
	fed.FederatesWith = []spiffeid.TrustDomain{partner}
	e.addIdentity(fed)
	e.cache.SetBundle(pca.Bundle())
	e.cache.SetBundle(oca.Bundle()) // stored, but the caller does not federate with it

	now := time.Now()
	claims := func(sub string, aud any, extra ...any) map[string]any {
		m := map[string]any{"sub": sub, "aud": aud, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i].(string)] = extra[i+1]
		}
		return m
	}
	mine := "spiffe://neural-hive.local/gateway"
	good := e.ca.SignJWT(t, claims(mine, []string{"x"}, "team", "a"), nil)
	withKid := func(kid string) string {
		return signWithKid(t, e.ca, kid, claims(mine, []string{"x"}))
	}
	header := func(k string, v any) string {
		return e.ca.SignJWT(t, claims(mine, []string{"x"}), (&jose.SignerOptions{}).WithHeader(jose.HeaderKey(k), v))
	}
	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[0] ^= 0xff
		parts[2] = base64.RawURLEncoding.EncodeToString(sig)
		return strings.Join(parts, ".")
	}
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+mine+`","aud":["x"],"exp":9999999999}`)) + "."

	for _, tt := range []struct {
		name       string
		svid       string
		audience   string
		code       codes.Code
		msg        string
		wantClaims []string
	}{
		{name: "ok/own trust domain", svid: good, audience: "x", wantClaims: []string{"aud", "exp", "iat", "sub", "team"}},
		{name: "ok/single aud string becomes a list", svid: e.ca.SignJWT(t, claims(mine, "x"), nil), audience: "x", wantClaims: []string{"aud", "exp", "iat", "sub"}},
		{name: "ok/federated trust domain, foreign claims reduced", svid: pca.SignJWT(t, claims("spiffe://partner.example/svc", []string{"x"}, "team", "b", "secret", "s"), nil),
			audience: "x", wantClaims: []string{"aud", "exp", "sub", "team"}},
		{name: "fail/missing audience", svid: good, code: codes.InvalidArgument, msg: "audience must be specified"},
		{name: "fail/missing svid", audience: "x", code: codes.InvalidArgument, msg: "svid must be specified"},
		{name: "fail/wrong audience", svid: good, audience: "other", code: codes.InvalidArgument,
			msg: `expected audience in ["other"] (audience=["x"])`},
		{name: "fail/unknown kid", svid: withKid("unknown-kid"), audience: "x", code: codes.InvalidArgument,
			msg: `public key "unknown-kid" not found in trust domain "neural-hive.local"`},
		{name: "fail/JW-12 token signed by another trust domain for our subject", svid: pca.SignJWT(t, claims(mine, []string{"x"}), nil),
			audience: "x", code: codes.InvalidArgument, msg: `public key "kid-partner.example" not found in trust domain "neural-hive.local"`},
		{name: "fail/JW-12 other trust domain's key under our kid", svid: signWith(t, pca, e.ca.JWTKeyID, claims(mine, []string{"x"})),
			audience: "x", code: codes.InvalidArgument, msg: "error in cryptographic primitive"},
		{name: "fail/trust domain the caller does not federate with", svid: oca.SignJWT(t, claims("spiffe://other.example/x", []string{"x"}), nil),
			audience: "x", code: codes.InvalidArgument, msg: `no keys found for trust domain "other.example"`},
		{name: "fail/bad signature", svid: tamper(good), audience: "x", code: codes.InvalidArgument, msg: "go-jose/go-jose: error in cryptographic primitive"},
		{name: "fail/not a JWT", svid: "not.a.jwt", audience: "x", code: codes.InvalidArgument, msg: "unable to parse JWT token"},
		{name: "fail/JW-01 JSON serialization", svid: `{"payload":"e30","signatures":[]}`, audience: "x", code: codes.InvalidArgument, msg: "unable to parse JWT token"},
		{name: "fail/JW-03 alg none", svid: noneTok, audience: "x", code: codes.InvalidArgument, msg: "unable to parse JWT token"},
		{name: "fail/JW-02 jku header", svid: header("jku", "https://evil.example/jwks"), audience: "x", code: codes.InvalidArgument, msg: `token header "jku" is not allowed`},
		{name: "fail/JW-02 private header", svid: header("x-private", "1"), audience: "x", code: codes.InvalidArgument, msg: `token header "x-private" is not allowed`},
		{name: "fail/JW-05 typ", svid: header("typ", "at+jwt"), audience: "x", code: codes.InvalidArgument, msg: "token header type not equal to either JWT or JOSE"},
		{name: "fail/JW-08 missing exp", svid: e.ca.SignJWT(t, map[string]any{"sub": mine, "aud": []string{"x"}}, nil), audience: "x",
			code: codes.InvalidArgument, msg: "token missing exp claim"},
		{name: "fail/JW-08 expired", svid: e.ca.SignJWT(t, map[string]any{"sub": mine, "aud": []string{"x"}, "exp": now.Add(-time.Hour).Unix()}, nil),
			audience: "x", code: codes.InvalidArgument, msg: "token has expired"},
		{name: "fail/JW-06 missing sub", svid: e.ca.SignJWT(t, map[string]any{"aud": []string{"x"}, "exp": now.Add(time.Hour).Unix()}, nil),
			audience: "x", code: codes.InvalidArgument, msg: "token missing subject claim"},
		{name: "fail/JW-06 sub not a SPIFFE ID", svid: e.ca.SignJWT(t, claims("https://neural-hive.local/x", []string{"x"}), nil),
			audience: "x", code: codes.InvalidArgument, msg: "invalid subject claim"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client().ValidateJWTSVID(withHeader(testCtx(t)), &workload.ValidateJWTSVIDRequest{Svid: tt.svid, Audience: tt.audience})
			if tt.code != codes.OK {
				wantStatus(t, err, tt.code, tt.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for k := range resp.Claims.AsMap() {
				got = append(got, k)
			}
			if !sameSet(got, tt.wantClaims) {
				t.Fatalf("claims = %v, want %v", got, tt.wantClaims)
			}
			if aud, ok := resp.Claims.AsMap()["aud"].([]any); !ok || aud[0] != "x" {
				t.Fatalf("aud = %v, want a list", resp.Claims.AsMap()["aud"])
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]bool)
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// signWithKid signs with ca's key under another key ID.
func signWithKid(tb testing.TB, ca *cachetest.CA, kid string, claims map[string]any) string {
	return signWith(tb, ca, kid, claims)
}

// signWith signs claims with ca's JWT key, announcing kid.
func signWith(tb testing.TB, ca *cachetest.CA, kid string, claims map[string]any) string {
	tb.Helper()
	fake := *ca
	fake.JWTKeyID = kid
	return fake.SignJWT(tb, claims, nil)
}
