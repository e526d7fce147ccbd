package spiffegrpc_test

import (
	"context"
	"crypto/x509"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
)

func TestMTLS_AuthenticationAndAuthorization(t *testing.T) {
	caA := spiffegrpctest.NewCA(t, tdA)
	caB := spiffegrpctest.NewCA(t, tdB)
	caC := spiffegrpctest.NewCA(t, tdC)
	rogueA := spiffegrpctest.NewCA(t, tdA) // same trust domain name, not in the bundle
	serverSVID := caA.X509SVID(t, serverID)
	bundles := x509bundle.NewSet(caA.X509Bundle(), caB.X509Bundle()) // td-c is unknown
	idB := spiffeid.RequireFromString("spiffe://td-b/orchestrator")

	for _, tt := range []struct {
		name       string
		svid       func() *x509svid.SVID // nil: no client certificate
		authorize  spiffegrpc.Authorizer
		stream     bool
		wantCode   string
		wantMsg    string
		wantReason spiffegrpc.Reason
		wantLogID  string
	}{
		{
			name: "ok/leaf-signed-by-root",
			svid: func() *x509svid.SVID { return caA.X509SVID(t, clientID) },
		},
		{
			name: "ok/stream",
			svid: func() *x509svid.SVID { return caA.X509SVID(t, clientID) }, stream: true,
		},
		{
			name: "ok/X5-12-chain-through-intermediate",
			svid: func() *x509svid.SVID { return caA.Intermediate(t).X509SVID(t, clientID) },
		},
		{
			name:      "ok/federated-trust-domain",
			svid:      func() *x509svid.SVID { return caB.X509SVID(t, idB) },
			authorize: spiffegrpc.AuthorizeAny(),
		},
		{
			name:     "fail/no-client-cert",
			wantCode: "Unauthenticated", wantMsg: "no client certificate", wantReason: spiffegrpc.ReasonNoPeerCert,
		},
		{
			name: "fail/no-client-cert-stream", stream: true,
			wantCode: "Unauthenticated", wantMsg: "no client certificate", wantReason: spiffegrpc.ReasonNoPeerCert,
		},
		{
			name:     "fail/untrusted-ca",
			svid:     func() *x509svid.SVID { return rogueA.X509SVID(t, clientID) },
			wantCode: "Unauthenticated", wantMsg: "unknown authority", wantReason: spiffegrpc.ReasonUntrusted, wantLogID: clientID.String(),
		},
		{
			// FD-02: bundles are never merged; td-b's CA cannot vouch for td-a.
			name:     "fail/FD-02-td-b-ca-signs-td-a-id",
			svid:     func() *x509svid.SVID { return caB.X509SVID(t, clientID) },
			wantCode: "Unauthenticated", wantMsg: "unknown authority", wantReason: spiffegrpc.ReasonUntrusted, wantLogID: clientID.String(),
		},
		{
			name:      "fail/other-trust-domain",
			svid:      func() *x509svid.SVID { return caC.X509SVID(t, spiffeid.RequireFromString("spiffe://td-c/x")) },
			authorize: spiffegrpc.AuthorizeAny(),
			wantCode:  "Unauthenticated", wantMsg: `no X.509 bundle for trust domain "td-c"`, wantReason: spiffegrpc.ReasonWrongTrustDomain, wantLogID: "spiffe://td-c/x",
		},
		{
			// X5-06, X5-13: a signing certificate is not an SVID.
			name:     "fail/X5-06-ca-cert-as-leaf",
			svid:     caA.CAAsSVID,
			wantCode: "Unauthenticated", wantMsg: "CA certificate presented as X509-SVID", wantReason: spiffegrpc.ReasonMalformed, wantLogID: "spiffe://td-a",
		},
		{
			name:     "fail/X5-06-intermediate-as-leaf",
			svid:     caA.Intermediate(t).CAAsSVID,
			wantCode: "Unauthenticated", wantMsg: "CA certificate presented as X509-SVID", wantReason: spiffegrpc.ReasonMalformed,
		},
		{
			name: "fail/X5-13-leaf-with-keyCertSign",
			svid: func() *x509svid.SVID {
				return caA.X509SVID(t, clientID, func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign })
			},
			wantCode: "Unauthenticated", wantMsg: "keyCertSign", wantReason: spiffegrpc.ReasonMalformed, wantLogID: clientID.String(),
		},
		{
			name: "fail/X5-13-leaf-with-cRLSign",
			svid: func() *x509svid.SVID {
				return caA.X509SVID(t, clientID, func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCRLSign })
			},
			wantCode: "Unauthenticated", wantMsg: "cRLSign", wantReason: spiffegrpc.ReasonMalformed,
		},
		{
			name: "fail/X5-02-two-uri-sans",
			svid: func() *x509svid.SVID {
				return caA.X509SVID(t, clientID, func(c *x509.Certificate) {
					c.URIs = append(c.URIs, spiffeid.RequireFromString("spiffe://td-a/admin").URL())
				})
			},
			wantCode: "Unauthenticated", wantMsg: "more than one URI SAN", wantReason: spiffegrpc.ReasonMalformed,
		},
		{
			name:     "fail/X5-02-no-uri-san",
			svid:     func() *x509svid.SVID { return caA.X509SVID(t, clientID, func(c *x509.Certificate) { c.URIs = nil }) },
			wantCode: "Unauthenticated", wantMsg: "no URI SAN", wantReason: spiffegrpc.ReasonMalformed,
		},
		{
			name: "fail/X5-13-scheme-not-spiffe",
			svid: func() *x509svid.SVID {
				return caA.X509SVID(t, clientID, func(c *x509.Certificate) { c.URIs = []*url.URL{{Scheme: "https", Host: "td-a", Path: "/x"}} })
			},
			wantCode: "Unauthenticated", wantMsg: "not an X509-SVID", wantReason: spiffegrpc.ReasonMalformed,
		},
		{
			// X5-03, X5-13: leaf IDs have a non-root path.
			name:     "fail/X5-03-root-id-leaf",
			svid:     func() *x509svid.SVID { return caA.X509SVID(t, tdA.ID()) },
			wantCode: "Unauthenticated", wantMsg: "has no path", wantReason: spiffegrpc.ReasonMalformed, wantLogID: "spiffe://td-a",
		},
		{
			name: "fail/T10-expired-leaf",
			svid: func() *x509svid.SVID {
				return caA.X509SVID(t, clientID, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) })
			},
			wantCode: "Unauthenticated", wantMsg: "X509-SVID expired at", wantReason: spiffegrpc.ReasonExpired, wantLogID: clientID.String(),
		},
		{
			name: "fail/not-yet-valid-leaf",
			svid: func() *x509svid.SVID {
				return caA.X509SVID(t, clientID, func(c *x509.Certificate) { c.NotBefore = time.Now().Add(time.Hour) })
			},
			wantCode: "Unauthenticated", wantMsg: "not valid before", wantReason: spiffegrpc.ReasonExpired,
		},
		{
			// X5-12: an expired intermediate breaks the chain.
			name: "fail/X5-12-expired-intermediate",
			svid: func() *x509svid.SVID {
				return caA.Intermediate(t, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) }).X509SVID(t, clientID)
			},
			wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonExpired,
		},
		{
			// X5-12: basic constraints, a non-CA cannot sign.
			name: "fail/X5-12-signed-by-non-ca",
			svid: func() *x509svid.SVID {
				return caA.Intermediate(t, func(c *x509.Certificate) {
					c.IsCA = false
					c.KeyUsage = x509.KeyUsageDigitalSignature
				}).X509SVID(t, clientID)
			},
			wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonUntrusted,
		},
		{
			// X5-12: pathLen 0 on the first intermediate forbids a second one.
			name: "fail/X5-12-pathlen-exceeded",
			svid: func() *x509svid.SVID {
				first := caA.Intermediate(t, func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true })
				return first.Intermediate(t).X509SVID(t, clientID)
			},
			wantCode: "Unauthenticated", wantReason: spiffegrpc.ReasonUntrusted,
		},
		{
			name:      "fail/denied-by-policy",
			svid:      func() *x509svid.SVID { return caA.X509SVID(t, clientID) },
			authorize: spiffegrpc.AuthorizeID(spiffeid.RequireFromString("spiffe://td-a/orchestrator")),
			wantCode:  "PermissionDenied", wantMsg: clientID.String() + " may not call", wantReason: spiffegrpc.ReasonDenied, wantLogID: clientID.String(),
		},
		{
			name:      "fail/denied-by-policy-stream",
			svid:      func() *x509svid.SVID { return caA.X509SVID(t, clientID) },
			authorize: spiffegrpc.AuthorizeID(spiffeid.RequireFromString("spiffe://td-a/orchestrator")),
			stream:    true,
			wantCode:  "PermissionDenied", wantMsg: "may not call", wantReason: spiffegrpc.ReasonDenied,
		},
		{
			name:      "fail/other-trust-domain-denied-by-policy",
			svid:      func() *x509svid.SVID { return caB.X509SVID(t, idB) },
			authorize: spiffegrpc.AuthorizeMemberOf(tdA),
			wantCode:  "PermissionDenied", wantReason: spiffegrpc.ReasonDenied, wantLogID: idB.String(),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			metrics, reg := newMetrics(t)
			logger, logs := spiffegrpctest.NewLogger(t)
			authorize := tt.authorize
			if authorize == nil {
				authorize = spiffegrpc.AuthorizeMemberOf(tdA)
			}
			auth, err := spiffegrpc.NewMTLSAuth(serverSVID, bundles, authorize,
				spiffegrpc.WithLogger(logger), spiffegrpc.WithMetrics(metrics))
			if err != nil {
				t.Fatal(err)
			}
			srv := startServer(t, "tcp", auth.ServerOptions()...)

			var creds credentials.TransportCredentials
			if tt.svid == nil {
				creds = grpccredentials.TLSClientCredentials(bundles, tlsconfig.AuthorizeID(serverID))
			} else {
				creds = grpccredentials.MTLSClientCredentials(tt.svid(), bundles, tlsconfig.AuthorizeID(serverID))
			}
			cc := dial(t, srv.addr, creds)
			call, method := spiffegrpctest.CallWho, spiffegrpctest.MethodWho
			if tt.stream {
				call, method = spiffegrpctest.CallWhoStream, spiffegrpctest.MethodWhoStream
			}
			got, err := call(ctxT(t), cc)

			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if want := tt.svid().ID.String(); got != want {
					t.Errorf("PeerIDFromContext = %q, want %q", got, want)
				}
				wantMetrics(t, reg, "grpc_auth", method, 1, 0, nil)
				if strings.Contains(logs.String(), "Auth refused") {
					t.Errorf("unexpected refusal log: %s", logs)
				}
				return
			}
			wantStatus(t, err, tt.wantCode, tt.wantMsg)
			if n := srv.calls.Load(); n != 0 {
				t.Errorf("handler ran %d times for a refused call", n)
			}
			wantMetrics(t, reg, "grpc_auth", method, 0, 1, map[spiffegrpc.Reason]int{tt.wantReason: 1})
			wantRefusalLog(t, logs.String(), method, tt.wantReason, tt.wantLogID)
		})
	}
}

// wantRefusalLog checks the warn line of a refusal: the runbook greps
// -i auth, the method, the reason and the peer's SPIFFE ID.
func wantRefusalLog(t *testing.T, logs, method string, reason spiffegrpc.Reason, id string) {
	t.Helper()
	line := ""
	for l := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(l, `"msg":"Auth refused"`) {
			line = l
			break
		}
	}
	if line == "" {
		t.Fatalf("no refusal logged; logs:\n%s", logs)
	}
	for _, want := range []string{`"level":"WARN"`, `"method":"` + method + `"`, `"reason":"` + string(reason) + `"`} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal log %s lacks %s", line, want)
		}
	}
	if id != "" && !strings.Contains(line, `"spiffe_id":"`+id+`"`) {
		t.Errorf("refusal log %s lacks spiffe_id %s", line, id)
	}
}

func TestMTLS_ContextWithoutAuth(t *testing.T) {
	if _, ok := spiffegrpc.PeerIDFromContext(context.Background()); ok {
		t.Fatal("PeerIDFromContext reported an ID outside a call")
	}
}

func TestNewMTLSAuth_RequiresSourcesAndAuthorizer(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	svid, b := ca.X509SVID(t, serverID), ca.X509Bundle()
	for _, tt := range []struct {
		name    string
		svids   x509svid.Source
		bundles x509bundle.Source
		authz   spiffegrpc.Authorizer
		want    string
	}{
		{"fail/nil-svids", nil, b, spiffegrpc.AuthorizeAny(), "nil X509-SVID source"},
		{"fail/nil-bundles", svid, nil, spiffegrpc.AuthorizeAny(), "nil X.509 bundle source"},
		{"fail/nil-authorizer", svid, b, nil, "nil authorizer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := spiffegrpc.NewMTLSAuth(tt.svids, tt.bundles, tt.authz)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// svidSource is a mutable x509svid.Source.
type svidSource struct{ p atomic.Pointer[x509svid.SVID] }

func (s *svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.p.Load(), nil }

// Extension: an established connection is re-checked on every call. When
// the client's SVID expires, calls on it are refused and the server closes
// it, so the client redials with its rotated SVID and goes on.
func TestMTLS_ExpiryRecheckedPerCallAndClientRedials(t *testing.T) {
	ca := spiffegrpctest.NewCA(t, tdA)
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	clock := func() time.Time { return *now.Load() }

	metrics, reg := newMetrics(t)
	auth, err := spiffegrpc.NewMTLSAuth(ca.X509SVID(t, serverID), ca.X509Bundle(), spiffegrpc.AuthorizeID(clientID),
		spiffegrpc.WithClock(clock), spiffegrpc.WithMetrics(metrics))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "tcp", auth.ServerOptions()...)
	src := &svidSource{}
	src.p.Store(ca.X509SVID(t, clientID)) // expires in one hour
	cc := dial(t, srv.addr, grpccredentials.MTLSClientCredentials(src, ca.X509Bundle(), tlsconfig.AuthorizeID(serverID)))
	ctx := ctxT(t)
	if _, err := spiffegrpctest.CallWho(ctx, cc); err != nil {
		t.Fatal(err)
	}

	later := start.Add(90 * time.Minute)
	now.Store(&later)
	_, err = spiffegrpctest.CallWho(ctx, cc)
	wantStatus(t, err, "Unauthenticated", "X509-SVID chain expired")

	// The client rotates; the server drops the stale connection.
	src.p.Store(ca.X509SVID(t, clientID, func(c *x509.Certificate) { c.NotAfter = later.Add(time.Hour) }))
	for s := cc.GetState(); s == connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			t.Fatal("connection never closed")
		}
	}
	if _, err := spiffegrpctest.CallWho(ctx, cc); err != nil {
		t.Fatalf("call after redial: %v", err)
	}
	wantMetrics(t, reg, "grpc_auth", spiffegrpctest.MethodWho, 2, 1, map[spiffegrpc.Reason]int{spiffegrpc.ReasonExpired: 1})
}
