package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/flowtest"
	"github.com/neural-hive/hive-identity/internal/hive/worker"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A worker without identity (no entry) reaches the registry without a
// client certificate and is refused with UNAUTHENTICATED, which the
// registry counts; once the agent issues its SVID it registers.
func TestWorkerWithoutIdentity(t *testing.T) {
	p := flowtest.Start(t, flowtest.Options{NoWorker: true})
	api := spiffegrpctest.NewWorkloadAPI(t) // no SVID yet: no registration entry
	log, logs := spiffegrpctest.NewLogger(t)
	w, err := worker.New(worker.Config{Listener: flowtest.Listen(t), WorkloadAPIAddr: api.Addr(), RegistryAddr: p.RegistryAddr,
		SVIDTimeout: 10 * time.Millisecond, RetryInterval: time.Hour, TrustBundle: p.CA.X509Bundle(),
		Registerer: prometheus.NewRegistry(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	refused := map[string]string{"method": flow.MethodRegister, "reason": "no_peer_cert"}
	flowtest.WaitFor(t, "refused registration", func() bool {
		return flowtest.Counter(t, p.RegistryMetrics, "grpc_auth_failures_total", refused) == 1
	})
	flowtest.WaitFor(t, "refusal log", func() bool { return strings.Contains(logs.String(), "Registration refused without X509-SVID") })
	if !strings.Contains(logs.String(), `"code":"Unauthenticated"`) || w.Registered() {
		t.Fatalf("worker logs:\n%s", logs.String())
	}

	// The runbook's fix: (re)create the entry; the agent then issues the SVID.
	if err := api.SetX509(p.CA.X509SVID(t, flow.WorkerID), p.CA.X509Bundle()); err != nil {
		t.Fatal(err)
	}
	flowtest.WaitFor(t, "registration", w.Registered)
	resp, err := p.Submitter(t, p.CA.JWTSVID(t, flow.SubmitterID, []string{flow.OrchestratorID.String()}, time.Hour)).
		Submit(ctxT(t), &flow.SubmitRequest{Capability: "wordcount", Payload: []byte("a b c")})
	if err != nil || resp.Output != "lines=0 words=3 bytes=5" {
		t.Fatalf("got %+v, %v", resp, err)
	}
}

// Only the orchestrator may dispatch to a worker.
func TestExecuteAuth(t *testing.T) {
	p := flowtest.Start(t, flowtest.Options{})
	task := &flow.Task{ID: "t1", Capability: "sha256", Payload: []byte("abc")}
	if _, err := flow.NewWorkerClient(p.Dial(t, p.WorkerAddr, p.CA.X509SVID(t, flow.SubmitterID), flow.WorkerID)).Execute(ctxT(t), task); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("submitter dispatching directly: %v, want PermissionDenied", err)
	}
	if _, err := flow.NewWorkerClient(p.Dial(t, p.WorkerAddr, nil, flow.WorkerID)).Execute(ctxT(t), task); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no client certificate: %v, want Unauthenticated", err)
	}
	res, err := flow.NewWorkerClient(p.Dial(t, p.WorkerAddr, p.CA.X509SVID(t, flow.OrchestratorID), flow.WorkerID)).Execute(ctxT(t), task)
	if err != nil || res.Output != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("orchestrator: %+v, %v", res, err)
	}
	if _, err := flow.NewWorkerClient(p.Dial(t, p.WorkerAddr, p.CA.X509SVID(t, flow.OrchestratorID), flow.WorkerID)).
		Execute(ctxT(t), &flow.Task{ID: "t2", Capability: "translate"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("unsupported capability: %v, want InvalidArgument", err)
	}
	if got := flowtest.Counter(t, p.WorkerMetrics, "grpc_auth_failures_total", map[string]string{"method": flow.MethodExecute}); got != 2 {
		t.Errorf("Execute auth failures = %v, want 2", got)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
