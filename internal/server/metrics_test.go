package server_test

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/neural-hive/hive-identity/internal/server"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// sample returns the value of the sample of family name whose labels
// include want (a histogram's sample count), and whether there is one.
func sample(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
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
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			return metricValue(m), true
		}
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServer_TelemetryAndHealth: the metrics the runbook names come from
// the running server (index, CA, API interceptors, datastore), and the
// health_checks listener answers SPIRE's subsystems with the same
// readiness as the gRPC health service.
func TestServer_TelemetryAndHealth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := tempDir(t)
	reg := telemetry.NewRegistry()
	healthPort, metricsPort := freePort(t), freePort(t)
	s, err := server.New(server.Config{
		TrustDomain:   td,
		DataDir:       filepath.Join(dir, "data"),
		SocketPath:    filepath.Join(dir, "s", "api.sock"),
		BindAddress:   &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
		NodeAttestors: map[string]map[string]any{"join_token": {}},
		HealthChecks:  server.HealthChecksConfig{ListenerEnabled: true, BindAddress: "127.0.0.1", BindPort: healthPort},
		Telemetry:     server.TelemetryConfig{PrometheusEnabled: true, PrometheusHost: "127.0.0.1", PrometheusPort: metricsPort},
		Registry:      reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	admin, _ := grpcUnix(t, filepath.Join(dir, "s", "api.sock"))

	t.Run("ok/ready body has SPIRE's subsystems", func(t *testing.T) {
		for _, path := range []string{"/ready", "/live"} {
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(healthPort) + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := `{"catalog.datastore":{},"server":{},"server.ca":{},"server.ca.rotator":{}}` + "\n"
			if resp.StatusCode != http.StatusOK || string(body) != want {
				t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
			}
		}
		hc, err := grpc_health_v1.NewHealthClient(admin).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		if err != nil || hc.Status != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health: %v %v", hc, err)
		}
	})

	t.Run("ok/counts come from the index and the API", func(t *testing.T) {
		if _, err := entryv1.NewEntryClient(admin).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
			SpiffeId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/workload"},
			ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/node"},
			Selectors: []*types.Selector{{Type: "unix", Value: "uid:1000"}},
		}}}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if v, _ := sample(t, reg, "spire_server_entries", nil); v == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("spire_server_entries never reached 1")
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, tt := range []struct {
			name   string
			labels map[string]string
			min    float64
		}{
			{"spire_server_api_calls_total", map[string]string{"service": "spire.api.server.entry.v1.Entry", "method": "BatchCreateEntry", "code": "OK"}, 1},
			{"spire_server_api_calls_total", map[string]string{"service": "grpc.health.v1.Health", "method": "Check", "code": "OK"}, 1},
			{"spire_server_datastore_operation_duration_seconds", map[string]string{"op": "fetch_bundle"}, 1},
			{"spire_server_ca_authority_expiry_timestamp_seconds", map[string]string{"type": "x509", "status": "active"}, float64(time.Now().Unix())},
			{"spire_server_ca_authority_ttl_seconds", map[string]string{"type": "jwt", "status": "active"}, 3600},
			{"spire_server_agents", nil, 0},
			{"spire_server_push_subscribers", nil, 0},
		} {
			v, ok := sample(t, reg, tt.name, tt.labels)
			if !ok || v < tt.min {
				t.Errorf("%s%v = %v (present %v), want >= %v", tt.name, tt.labels, v, ok, tt.min)
			}
		}
	})

	t.Run("fail/bad join token counts one failed attestation", func(t *testing.T) {
		before, _ := sample(t, reg, "spire_server_node_attestations_total", map[string]string{"attestor": "join_token", "result": "failure"})
		tok, err := agentv1.NewAgentClient(admin).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600})
		if err != nil {
			t.Fatal(err)
		}
		a := tcpAgent(t, s, admin)
		if _, err := a.attest(ctx, "not-"+tok.Value); err == nil {
			t.Fatal("attestation with a bad token succeeded")
		}
		after, _ := sample(t, reg, "spire_server_node_attestations_total", map[string]string{"attestor": "join_token", "result": "failure"})
		if after != before+1 {
			t.Fatalf("failures %v -> %v, want one more", before, after)
		}
		if _, err := a.attest(ctx, tok.Value); err != nil {
			t.Fatal(err)
		}
		if v, _ := sample(t, reg, "spire_server_node_attestations_total", map[string]string{"attestor": "join_token", "result": "success"}); v != 1 {
			t.Fatalf("successes = %v", v)
		}
		if v, _ := sample(t, reg, "spire_server_svids_issued_total", map[string]string{"type": "x509"}); v != 1 {
			t.Fatalf("x509 SVIDs issued = %v, want the agent's one", v)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if v, _ := sample(t, reg, "spire_server_agents", nil); v == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("spire_server_agents never reached 1")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("ok/Prometheus listener serves the registry", func(t *testing.T) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"spire_server_entries 1", "go_goroutines", "process_"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("scrape lacks %q", want)
			}
		}
	})
}

// tcpAgent returns an agent side of the TCP endpoint, trusting the server's
// current bundle.
func tcpAgent(t *testing.T, s *server.Server, admin *grpc.ClientConn) *agentSide {
	t.Helper()
	b, err := bundlev1.NewBundleClient(admin).GetBundle(context.Background(), &bundlev1.GetBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var roots []*x509.Certificate
	for _, a := range b.X509Authorities {
		c, err := x509.ParseCertificate(a.Asn1)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, c)
	}
	return &agentSide{t: t, addr: s.TCPAddr().String(), bundle: x509bundle.FromX509Authorities(td, roots)}
}

// attest runs AttestAgent with a join token and returns the agent SVID.
func (a *agentSide) attest(ctx context.Context, token string) (*types.X509SVID, error) {
	_, csr := keyAndCSR(a.t)
	stream, err := agentv1.NewAgentClient(a.dial(nil)).AttestAgent(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data: &types.AttestationData{Type: "join_token", Payload: []byte(token)}, Params: &agentv1.AgentX509SVIDParams{Csr: csr}}}}); err != nil {
		return nil, err
	}
	res, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return res.GetResult().GetSvid(), nil
}
