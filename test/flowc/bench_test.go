package flowc

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/cli"
	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/workload"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
)

// BenchmarkFlowC_RoundTrip measures one Flow C task across the real
// processes: this benchmark is the client (an entry for its own binary
// gives it the flowc-submit identity), with its JWT-SVID from the agent
// (cached by JWTCredentials) over a warm TLS connection; the orchestrator
// validates it, discovers at the registry over mTLS (C3) and dispatches to
// the worker over mTLS. It reports p50 and p99 of the round trip.
func BenchmarkFlowC_RoundTrip(b *testing.B) {
	p := newPlane(b, planeOptions{registryArgs: []string{"-leaseTTL", "1h"}})
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	p.srv.entry(b, submitterID, exe)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	src, err := workload.Open(ctx, workload.Config{Addr: "unix://" + p.agent.socket, JWT: true})
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	orch := spiffeid.RequireFromString(orchID)
	creds, err := spiffegrpc.NewJWTCredentials(src.JWT, orch.String())
	if err != nil {
		b.Fatal(err)
	}
	conn, err := grpc.NewClient(p.orchestrator.addr,
		grpc.WithTransportCredentials(grpccredentials.TLSClientCredentials(src.X509, tlsconfig.AuthorizeID(orch))),
		grpc.WithPerRPCCredentials(creds))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := flow.NewOrchestratorClient(conn)
	req := &flow.SubmitRequest{Capability: "sha256", Payload: []byte("Neural Hive Flow C benchmark")}
	for range 3 { // warm the connections of every hop
		if _, err := client.Submit(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	var rtts []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := client.Submit(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	b.ReportMetric(float64(cli.Percentile(rtts, 0.50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(cli.Percentile(rtts, 0.99).Nanoseconds()), "p99-ns")
}
