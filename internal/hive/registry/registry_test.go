package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/flowtest"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The registry's policy over mTLS: only the worker-agents register, only
// the orchestrator discovers, and a refused call changes nothing.
func TestRegistryAuth(t *testing.T) {
	p := flowtest.Start(t, flowtest.Options{NoWorker: true})
	other := spiffegrpctest.NewCA(t, spiffeid.RequireTrustDomainFromString("other.local"))
	rogueCA := spiffegrpctest.NewCA(t, flowtest.TrustDomain)
	register := &flow.RegisterRequest{Address: "127.0.0.1:7000", Capabilities: []string{"sha256"}}
	discover := func() int {
		resp, err := flow.NewRegistryClient(p.Dial(t, p.RegistryAddr, p.CA.X509SVID(t, p.OrchestratorID), flow.RegistryID)).
			Discover(ctxT(t), &flow.DiscoverRequest{Capability: "sha256"})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Workers)
	}

	for _, tt := range []struct {
		name   string
		svid   *x509svid.SVID
		call   func(flow.RegistryClient) error
		code   codes.Code
		msg    string
		reason string // grpc_auth_failures_total reason
		method string
	}{
		{name: "ok/worker registers", svid: p.CA.X509SVID(t, flow.WorkerID), method: flow.MethodRegister,
			call: func(c flow.RegistryClient) error { _, err := c.Register(ctxT(t), register); return err }},
		{name: "fail/orchestrator registers", svid: p.CA.X509SVID(t, p.OrchestratorID), method: flow.MethodRegister,
			call: func(c flow.RegistryClient) error { _, err := c.Register(ctxT(t), register); return err },
			code: codes.PermissionDenied, msg: "may not call /hive.flow.v1.Registry/Register", reason: "denied"},
		{name: "fail/worker discovers", svid: p.CA.X509SVID(t, flow.WorkerID), method: flow.MethodDiscover,
			call: func(c flow.RegistryClient) error {
				_, err := c.Discover(ctxT(t), &flow.DiscoverRequest{Capability: "sha256"})
				return err
			},
			code: codes.PermissionDenied, msg: "may not call /hive.flow.v1.Registry/Discover", reason: "denied"},
		{name: "fail/no client certificate", method: flow.MethodRegister,
			call: func(c flow.RegistryClient) error { _, err := c.Register(ctxT(t), register); return err },
			code: codes.Unauthenticated, msg: "no_peer_cert", reason: "no_peer_cert"},
		{name: "fail/other trust domain", svid: other.X509SVID(t, spiffeid.RequireFromString("spiffe://other.local/ns/neural-hive-execution/sa/worker-agents")),
			method: flow.MethodRegister,
			call:   func(c flow.RegistryClient) error { _, err := c.Register(ctxT(t), register); return err },
			code:   codes.Unauthenticated, msg: "wrong_trust_domain", reason: "wrong_trust_domain"},
		{name: "fail/worker ID from an unknown CA", svid: rogueCA.X509SVID(t, flow.WorkerID), method: flow.MethodRegister,
			call: func(c flow.RegistryClient) error { _, err := c.Register(ctxT(t), register); return err },
			code: codes.Unauthenticated, msg: "untrusted", reason: "untrusted"},
		{name: "fail/heartbeat unknown lease", svid: p.CA.X509SVID(t, flow.WorkerID), method: flow.MethodHeartbeat,
			call: func(c flow.RegistryClient) error {
				_, err := c.Heartbeat(ctxT(t), &flow.HeartbeatRequest{InstanceID: "unknown"})
				return err
			},
			code: codes.NotFound, msg: "lease not found"},
		{name: "fail/invalid registration", svid: p.CA.X509SVID(t, flow.WorkerID), method: flow.MethodRegister,
			call: func(c flow.RegistryClient) error {
				_, err := c.Register(ctxT(t), &flow.RegisterRequest{Address: "nowhere", Capabilities: []string{"sha256"}})
				return err
			},
			code: codes.InvalidArgument, msg: "is not host:port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := discover()
			failures := flowtest.Counter(t, p.RegistryMetrics, "grpc_auth_failures_total", map[string]string{"reason": tt.reason, "method": tt.method})
			err := tt.call(flow.NewRegistryClient(p.Dial(t, p.RegistryAddr, tt.svid, flow.RegistryID)))
			if status.Code(err) != tt.code || (tt.code != codes.OK && !strings.Contains(status.Convert(err).Message(), tt.msg)) {
				t.Fatalf("got %v, want %s containing %q", err, tt.code, tt.msg)
			}
			want := before
			if tt.code == codes.OK {
				want++
			}
			if got := discover(); got != want {
				t.Errorf("%d workers discovered, want %d", got, want)
			}
			if tt.reason == "" {
				return
			}
			if got := flowtest.Counter(t, p.RegistryMetrics, "grpc_auth_failures_total", map[string]string{"reason": tt.reason, "method": tt.method}); got != failures+1 {
				t.Errorf("grpc_auth_failures_total{reason=%s} = %v, want %v", tt.reason, got, failures+1)
			}
			if !strings.Contains(p.RegistryLogs.String(), `"msg":"Auth refused","auth":"x509-svid","method":"`+tt.method+`"`) {
				t.Errorf("refusal not logged:\n%s", p.RegistryLogs.String())
			}
		})
	}
}
