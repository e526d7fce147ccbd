package spiffegrpc_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/local"
	"google.golang.org/grpc/metadata"
)

// The interceptor over a real unix socket: each refusal has its reason in
// grpc_jwt_auth_failures_total, a warn log naming auth, method and SPIFFE
// ID, and no trace of the token in the log (T9).
func TestJWTAuth_Interceptor(t *testing.T) {
	f := newJWTFixture(t)
	byName := map[string]jwtCase{}
	for _, c := range jwtCases() {
		byName[c.name] = c
	}
	type grpcCase struct {
		name       string
		jwtCase    string // token from jwtCases; "" = no token
		authHeader func(token string) string
		authorize  spiffegrpc.Authorizer
		stream     bool
		wantCode   string
		wantReason spiffegrpc.Reason
		wantLogID  string
	}
	cases := []grpcCase{
		{name: "ok/unary", jwtCase: "ok/ES256"},
		{name: "ok/stream", jwtCase: "ok/ES256", stream: true},
		{name: "ok/bearer-scheme-case-insensitive", jwtCase: "ok/ES256", authHeader: func(tok string) string { return "bearer " + tok }},
		{name: "fail/missing-token", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMissingToken},
		{name: "fail/missing-token-stream", stream: true, wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMissingToken},
		{name: "fail/empty-bearer", jwtCase: "ok/ES256", authHeader: func(string) string { return "Bearer " }, wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMissingToken},
		{name: "fail/basic-auth", jwtCase: "ok/ES256", authHeader: func(tok string) string { return "Basic " + tok }, wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMalformed},
		{name: "fail/wrong-audience", jwtCase: "fail/JW-07-wrong-aud", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonWrongAudience, wantLogID: clientID.String()},
		{name: "fail/expired", jwtCase: "fail/JW-08-expired", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonExpired, wantLogID: clientID.String()},
		{name: "fail/expired-stream", jwtCase: "fail/JW-08-expired", stream: true, wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonExpired},
		{name: "fail/unknown-key", jwtCase: "fail/unknown-kid", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonUnknownKey, wantLogID: clientID.String()},
		{name: "fail/JW-12-other-trust-domain-key", jwtCase: "fail/JW-12-td-b-key-signs-td-a-sub", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonUnknownKey, wantLogID: clientID.String()},
		{name: "fail/JW-12-other-trust-domain-key-forged-kid", jwtCase: "fail/JW-12-td-b-key-with-td-a-kid", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonBadSignature},
		{name: "fail/wrong-trust-domain", jwtCase: "fail/JW-12-sub-in-unknown-trust-domain", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonWrongTrustDomain, wantLogID: "spiffe://td-c/x"},
		{name: "fail/JW-04-alg-none", jwtCase: "fail/JW-03-alg-none", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMalformed},
		{name: "fail/JW-04-HS256-with-RSA-public-key", jwtCase: "fail/JW-04-HS256-with-RSA-public-key-PEM", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMalformed},
		{name: "fail/JW-02-extra-header", jwtCase: "fail/JW-02-jku", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMalformed},
		{name: "fail/JW-01-json-serialization", jwtCase: "fail/JW-01-json-serialization", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMalformed},
		{name: "fail/JW-08-missing-exp", jwtCase: "fail/JW-08-missing-exp", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonMalformed, wantLogID: clientID.String()},
		{name: "fail/bad-signature", jwtCase: "fail/JW-09-tampered-claims", wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonBadSignature},
		{name: "fail/denied", jwtCase: "ok/ES256", authorize: spiffegrpc.AuthorizeID(spiffeid.RequireFromString("spiffe://td-a/admin")),
			wantCode: "PermissionDenied", wantReason: spiffegrpc.ReasonDenied, wantLogID: clientID.String()},
		{name: "fail/denied-stream", jwtCase: "ok/ES256", stream: true, authorize: spiffegrpc.AuthorizeID(spiffeid.RequireFromString("spiffe://td-a/admin")),
			wantCode: "PermissionDenied", wantReason: spiffegrpc.ReasonDenied},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			metrics, reg := newMetrics(t)
			logger, logs := spiffegrpctest.NewLogger(t)
			authorize := tt.authorize
			if authorize == nil {
				authorize = spiffegrpc.AuthorizeMemberOf(tdA)
			}
			auth, err := spiffegrpc.NewJWTAuth(f.bundles, audience, authorize, spiffegrpc.WithLogger(logger), spiffegrpc.WithMetrics(metrics))
			if err != nil {
				t.Fatal(err)
			}
			srv := startServer(t, "unix", append([]grpc.ServerOption{grpc.Creds(local.NewCredentials())}, auth.ServerOptions()...)...)
			cc := dial(t, srv.addr, local.NewCredentials())

			ctx := ctxT(t)
			var token string
			if tt.jwtCase != "" {
				c, ok := byName[tt.jwtCase]
				if !ok {
					t.Fatalf("no jwt case %q", tt.jwtCase)
				}
				token = c.token(t, f)
				h := "Bearer " + token
				if tt.authHeader != nil {
					h = tt.authHeader(token)
				}
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", h)
			}
			call, method := spiffegrpctest.CallWho, spiffegrpctest.MethodWho
			if tt.stream {
				call, method = spiffegrpctest.CallWhoStream, spiffegrpctest.MethodWhoStream
			}
			got, err := call(ctx, cc)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if got != clientID.String() {
					t.Errorf("PeerIDFromContext = %q, want %q", got, clientID)
				}
				wantMetrics(t, reg, "grpc_jwt_auth", method, 1, 0, nil)
				return
			}
			wantStatus(t, err, tt.wantCode, "")
			if n := srv.calls.Load(); n != 0 {
				t.Errorf("handler ran %d times for a refused call", n)
			}
			wantMetrics(t, reg, "grpc_jwt_auth", method, 0, 1, map[spiffegrpc.Reason]int{tt.wantReason: 1})
			wantRefusalLog(t, logs.String(), method, tt.wantReason, tt.wantLogID)
			if token != "" {
				assertNoToken(t, logs.String(), token) // T9: refusals never log the token
				assertNoToken(t, err.Error(), token)   // nor echo it to the caller
			}
			// The mTLS counters are untouched by JWT auth.
			wantMetrics(t, reg, "grpc_auth", method, 0, 0, nil)
		})
	}
}

// countingSource is a jwtsvid.Source fake: it mints tokens from a CA and
// counts fetches; SetError injects failures.
type countingSource struct {
	ca      *spiffegrpctest.CA
	t       *testing.T
	ttl     time.Duration
	now     func() time.Time
	fetches atomic.Int64
	mu      sync.Mutex
	err     error
}

func (s *countingSource) SetError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *countingSource) FetchJWTSVID(_ context.Context, p jwtsvid.Params) (*jwtsvid.SVID, error) {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.fetches.Add(1)
	now := s.now()
	tok := s.ca.SignJWT(s.t, s.ca.JWTKeyID(), map[string]any{"alg": "ES256", "kid": s.ca.JWTKeyID(), "typ": "JWT"},
		map[string]any{"sub": clientID.String(), "aud": []string{p.Audience}, "exp": now.Add(s.ttl).Unix()})
	return jwtsvid.ParseInsecure(tok, []string{p.Audience})
}

func TestJWTCredentials_CachesUntilHalfLife(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	src := &countingSource{ca: ca, t: t, ttl: 10 * time.Minute, now: clock}
	logger, logs := spiffegrpctest.NewLogger(t)
	creds, err := spiffegrpc.NewJWTCredentials(src, audience, spiffegrpc.WithClock(clock), spiffegrpc.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	md, err := creds.GetRequestMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := md["authorization"]
	if !strings.HasPrefix(first, "Bearer ") {
		t.Fatalf("authorization = %q", first)
	}
	if !creds.RequireTransportSecurity() {
		t.Error("bearer tokens must require transport security")
	}

	step := func(d time.Duration) { now = now.Add(d) }
	token := func() string {
		t.Helper()
		tok, err := creds.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	step(4*time.Minute + 59*time.Second) // before half-life: cached
	if token() != strings.TrimPrefix(first, "Bearer ") || src.fetches.Load() != 1 {
		t.Fatalf("fetches = %d before half-life, want 1", src.fetches.Load())
	}
	step(2 * time.Second) // past half-life: refreshed
	second := token()
	if src.fetches.Load() != 2 || second == strings.TrimPrefix(first, "Bearer ") {
		t.Fatalf("fetches = %d after half-life, want 2 and a new token", src.fetches.Load())
	}

	// Agent outage while the cached token is valid: keep serving it.
	src.SetError(errors.New("workload API unavailable"))
	step(6 * time.Minute)
	if token() != second {
		t.Fatal("cached token not served during outage")
	}
	if !strings.Contains(logs.String(), "JWT-SVID refresh failed") {
		t.Errorf("refresh failure not logged: %s", logs)
	}
	assertNoToken(t, logs.String(), second)
	// Once it expired, fail.
	step(5 * time.Minute)
	if _, err := creds.Token(ctx); err == nil || !strings.Contains(err.Error(), "workload API unavailable") {
		t.Fatalf("err = %v, want fetch failure after expiry", err)
	}
	src.SetError(nil)
	if token() == second {
		t.Fatal("no new token after recovery")
	}
}

func TestJWTCredentials_ConcurrentCallersFetchOnce(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	src := &countingSource{ca: ca, t: t, ttl: time.Hour, now: time.Now}
	creds, err := spiffegrpc.NewJWTCredentials(src, audience)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := creds.Token(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := src.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
}

func TestNewJWTCredentials_RequiresArguments(t *testing.T) {
	if _, err := spiffegrpc.NewJWTCredentials(nil, audience); err == nil {
		t.Error("nil source accepted")
	}
	if _, err := spiffegrpc.NewJWTCredentials(&countingSource{}, ""); err == nil {
		t.Error("empty audience accepted")
	}
}

// End to end through go-spiffe's workloadapi client: the client's
// JWTSource fetches one JWT-SVID for many calls, the server validates
// against the JWT bundles of its own JWTSource, locally.
func TestJWT_EndToEndWithWorkloadAPI(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	api := spiffegrpctest.NewWorkloadAPI(t)
	if err := api.SetJWTBundles(ca.JWTBundle()); err != nil {
		t.Fatal(err)
	}
	api.SetJWTIssuer(ca, clientID, time.Hour)
	ctx := ctxT(t)
	src, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(api.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })

	metrics, reg := newMetrics(t)
	auth, err := spiffegrpc.NewJWTAuth(src, audience, spiffegrpc.AuthorizeID(clientID), spiffegrpc.WithMetrics(metrics))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "unix", append([]grpc.ServerOption{grpc.Creds(local.NewCredentials())}, auth.ServerOptions()...)...)
	creds, err := spiffegrpc.NewJWTCredentials(src, audience)
	if err != nil {
		t.Fatal(err)
	}
	cc := dial(t, srv.addr, local.NewCredentials(), grpc.WithPerRPCCredentials(creds))
	for range 10 {
		got, err := spiffegrpctest.CallWho(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		if got != clientID.String() {
			t.Fatalf("who = %q", got)
		}
	}
	if n := api.JWTFetches(); n != 1 {
		t.Errorf("Workload API JWT fetches = %d, want 1 (cached until half-life)", n)
	}
	wantMetrics(t, reg, "grpc_jwt_auth", spiffegrpctest.MethodWho, 10, 0, nil)
}
