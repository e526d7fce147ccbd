package workloadapi_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/neural-hive/hive-identity/internal/agent/workloadapi"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

func withMetrics(t *testing.T) (envOption, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := telemetry.NewAgentMetrics(reg, telemetry.AgentSources{})
	if err != nil {
		t.Fatal(err)
	}
	return func(c *workloadapi.Config) {
		c.Metrics = m
		c.AttestorName = "unix"
		c.UnaryInterceptors = []grpc.UnaryServerInterceptor{m.UnaryServerInterceptor()}
		c.StreamInterceptors = []grpc.StreamServerInterceptor{m.StreamServerInterceptor()}
	}, reg
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestMetrics: a caller without identity counts one workload attestation
// error per refused call, calls are counted by method and code on gRPC and
// HTTP, and every accepted connection is counted open until it closes.
func TestMetrics(t *testing.T) {
	opt, reg := withMetrics(t)
	e := newEnv(t, opt)
	noID := map[string]string{"type": "workload", "attestor": "unix", "reason": "no_identity"}

	// No entry for the caller: PermissionDenied, counted once.
	stream, err := e.client().FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantStatus(t, err, codes.PermissionDenied, "no identity issued")
	if got := counter(t, reg, "spire_agent_attestation_errors_total", noID); got != 1 {
		t.Fatalf("workload attestation errors = %v, want 1", got)
	}
	if got := counter(t, reg, "spire_agent_workload_api_calls_total", map[string]string{"method": "FetchX509SVID", "code": "PermissionDenied"}); got != 1 {
		t.Fatalf("FetchX509SVID PermissionDenied calls = %v, want 1", got)
	}
	resp, err := e.httpClient().Get("http://localhost/v1/spiffe/workload/x509svid")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || counter(t, reg, "spire_agent_attestation_errors_total", noID) != 2 ||
		counter(t, reg, "spire_agent_workload_api_calls_total", map[string]string{"method": "x509svid_http", "code": "PermissionDenied"}) != 1 {
		t.Fatalf("HTTP caller without identity: %d", resp.StatusCode)
	}

	// With an identity, the call is OK and nothing more is counted as an error.
	e.addIdentity(entry("a", "spiffe://neural-hive.local/a", mySelector()))
	if _, err := e.client().FetchJWTSVID(withHeader(testCtx(t)), &workload.JWTSVIDRequest{Audience: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, reg, "spire_agent_workload_api_calls_total", map[string]string{"method": "FetchJWTSVID", "code": "OK"}); got != 1 {
		t.Fatalf("FetchJWTSVID OK calls = %v", got)
	}
	if got := counter(t, reg, "spire_agent_attestation_errors_total", noID); got != 2 {
		t.Fatalf("errors after a served call = %v, want 2", got)
	}
	if n := counter(t, reg, "spire_agent_workload_api_connections", nil); n < 1 {
		t.Fatalf("open connections = %v, want the clients' ones", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}

	// Stopping the server closes every connection: the gauge returns to 0.
	e.stop()
	if n := counter(t, reg, "spire_agent_workload_api_connections", nil); n != 0 {
		t.Fatalf("open connections after stop = %v, want 0", n)
	}
}

// TestHealthUsesConfiguredCheck: the gRPC health service answers with the
// agent's check when one is configured.
func TestHealthUsesConfiguredCheck(t *testing.T) {
	var healthy atomic.Bool
	e := newEnv(t, func(c *workloadapi.Config) {
		c.Health = func(context.Context) error {
			if healthy.Load() {
				return nil
			}
			return errors.New("agent SVID expired")
		}
	})
	hc := grpc_health_v1.NewHealthClient(e.conn())
	for _, want := range []grpc_health_v1.HealthCheckResponse_ServingStatus{
		grpc_health_v1.HealthCheckResponse_NOT_SERVING, grpc_health_v1.HealthCheckResponse_SERVING,
	} {
		resp, err := hc.Check(testCtx(t), &grpc_health_v1.HealthCheckRequest{})
		if err != nil || resp.Status != want {
			t.Fatalf("Check = %v %v, want %v", resp, err, want)
		}
		healthy.Store(true)
	}
}
