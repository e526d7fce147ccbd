package orchestrator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/flowtest"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSubmit(t *testing.T) {
	p := flowtest.Start(t, flowtest.Options{})
	other := spiffegrpctest.NewCA(t, spiffeid.RequireTrustDomainFromString("other.local"))
	good := p.CA.JWTSVID(t, flow.SubmitterID, []string{flow.OrchestratorID.String()}, time.Hour)
	payload := []byte("one two\nthree")
	sum := sha256.Sum256(payload)

	for _, tt := range []struct {
		name       string
		token      string
		capability string
		code       codes.Code
		msg        string // substring of the error, or of the output on success
		reason     string // grpc_jwt_auth_failures_total reason
	}{
		{name: "ok/sha256", token: good, capability: "sha256", msg: hex.EncodeToString(sum[:])},
		{name: "ok/wordcount", token: good, capability: "wordcount", msg: "lines=1 words=3 bytes=13"},
		{name: "fail/wrong audience", capability: "sha256", code: codes.Unauthenticated, msg: "wrong_audience", reason: "wrong_audience",
			token: p.CA.JWTSVID(t, flow.SubmitterID, []string{flow.RegistryID.String()}, time.Hour)},
		{name: "fail/other trust domain", capability: "sha256", code: codes.Unauthenticated, msg: "wrong_trust_domain", reason: "wrong_trust_domain",
			token: other.JWTSVID(t, spiffeid.RequireFromString("spiffe://other.local/ns/x/sa/y"), []string{flow.OrchestratorID.String()}, time.Hour)},
		{name: "fail/unknown key", capability: "sha256", code: codes.Unauthenticated, msg: "unknown_key", reason: "unknown_key",
			token: spiffegrpctest.NewCA(t, flowtest.TrustDomain).JWTSVID(t, flow.SubmitterID, []string{flow.OrchestratorID.String()}, time.Hour)},
		{name: "fail/no worker for capability", token: good, capability: "translate", code: codes.FailedPrecondition,
			msg: `C3: no worker registered for capability "translate"`},
		{name: "fail/invalid capability", token: good, capability: "SHA 256", code: codes.InvalidArgument, msg: "is not [a-z0-9]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			failuresBefore := flowtest.Counter(t, p.OrchestratorMetrics, "grpc_jwt_auth_failures_total", map[string]string{"reason": tt.reason})
			resp, err := p.Submitter(t, tt.token).Submit(ctxT(t), &flow.SubmitRequest{Capability: tt.capability, Payload: payload})
			if tt.code != codes.OK {
				if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
					t.Fatalf("got %v, want %s containing %q", err, tt.code, tt.msg)
				}
				if tt.reason != "" {
					if got := flowtest.Counter(t, p.OrchestratorMetrics, "grpc_jwt_auth_failures_total", map[string]string{"reason": tt.reason}); got != failuresBefore+1 {
						t.Errorf("failures{reason=%s} = %v, want %v", tt.reason, got, failuresBefore+1)
					}
					if logs := p.OrchestratorLogs.String(); !strings.Contains(logs, `"reason":"`+tt.reason+`"`) || strings.Contains(logs, tt.token) {
						t.Errorf("refusal not logged with reason %s, or token logged", tt.reason)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Output != tt.msg || resp.Submitter != flow.SubmitterID.String() || resp.Worker.SPIFFEID != flow.WorkerID.String() {
				t.Errorf("got %+v", resp)
			}
		})
	}
	if got := flowtest.Counter(t, p.RegistryMetrics, "grpc_auth_attempts_total", map[string]string{"method": flow.MethodDiscover, "status": "success"}); got != 3 {
		t.Errorf("registry Discover successes = %v, want 3 (two tasks and the capability without worker)", got)
	}
	if got := flowtest.Counter(t, p.WorkerMetrics, "grpc_auth_attempts_total", map[string]string{"method": flow.MethodExecute, "status": "success"}); got != 2 {
		t.Errorf("worker Execute successes = %v, want 2", got)
	}
	if got := flowtest.Counter(t, p.WorkerMetrics, "hive_worker_tasks_total", nil); got != 2 {
		t.Errorf("tasks executed = %v, want 2", got)
	}
}

// A registry that refuses the orchestrator (its entry went missing) makes
// Flow C fail at C3, as in the runbook.
func TestSubmit_DiscoveryRefused(t *testing.T) {
	rogue := spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/not-the-orchestrator")
	p := flowtest.Start(t, flowtest.Options{OrchestratorID: rogue})
	_, err := p.Submitter(t, p.CA.JWTSVID(t, flow.SubmitterID, []string{rogue.String()}, time.Hour)).
		Submit(ctxT(t), &flow.SubmitRequest{Capability: "sha256", Payload: []byte("x")})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "C3: discovery at the service registry failed: PermissionDenied") {
		t.Fatalf("got %v", err)
	}
	if got := flowtest.Counter(t, p.RegistryMetrics, "grpc_auth_failures_total", map[string]string{"method": flow.MethodDiscover, "reason": "denied"}); got != 1 {
		t.Errorf("registry Discover denials = %v, want 1", got)
	}
	if got := flowtest.Counter(t, p.OrchestratorMetrics, "hive_orchestrator_tasks_total", map[string]string{"result": "discovery_failed"}); got != 1 {
		t.Errorf("discovery_failed tasks = %v, want 1", got)
	}
}

// BenchmarkSubmit measures a Flow C round trip in-process: JWT-SVID
// validation, C3 discovery over mTLS and dispatch over mTLS, on warm
// connections. test/flowc measures it across real processes.
func BenchmarkSubmit(b *testing.B) {
	p := flowtest.Start(b, flowtest.Options{})
	client := p.Submitter(b, p.CA.JWTSVID(b, flow.SubmitterID, []string{flow.OrchestratorID.String()}, time.Hour))
	ctx := context.Background()
	req := &flow.SubmitRequest{Capability: "sha256", Payload: []byte("benchmark")}
	if _, err := client.Submit(ctx, req); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := client.Submit(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
