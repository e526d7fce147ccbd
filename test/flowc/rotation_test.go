package flowc

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/workload"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
)

// submitter makes this test binary a Flow C client: an entry for its own
// path gives it the flowc-submit identity; it sends JWT-SVIDs from the agent
// over TLS to the orchestrator.
func (p *plane) submitter(tb testing.TB, ttl ...string) flow.OrchestratorClient {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	p.srv.entry(tb, submitterID, exe, ttl...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := workload.Open(ctx, workload.Config{Addr: "unix://" + p.agent.socket, ID: spiffeid.RequireFromString(submitterID), JWT: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(src.Close)
	orch := spiffeid.RequireFromString(orchID)
	creds, err := spiffegrpc.NewJWTCredentials(src.JWT, orch.String())
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := grpc.NewClient(p.orchestrator.addr,
		grpc.WithTransportCredentials(grpccredentials.TLSClientCredentials(src.X509, tlsconfig.AuthorizeID(orch))),
		grpc.WithPerRPCCredentials(creds))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return flow.NewOrchestratorClient(conn)
}

// Steady Flow C traffic while every service's X509-SVID rotates (TTL 20s,
// rotated by the agent at half life): no call fails, because the servers
// recycle connections (-maxConnectionAge) before a client's SVID expires.
func TestFlowC_SVIDRotationUnderTraffic(t *testing.T) {
	p := newPlane(t, planeOptions{ttl: []string{"-x509SVIDTTL", "20"}, serviceArgs: []string{"-maxConnectionAge", "3s"}})
	client := p.submitter(t)
	req := &flow.SubmitRequest{Capability: "sha256", Payload: []byte("rotation")}

	// rotations counts, per service, how often its SVID's remaining life
	// went up between two scrapes: a new SVID.
	services := []*service{p.registry, p.orchestrator, p.worker}
	last := make([]float64, len(services))
	rotations := make([]int, len(services))
	scrape := func() {
		for i, s := range services {
			left := counter(t, s.metrics(t), "spiffe_x509_svid_expiration_seconds", nil)
			if last[i] != 0 && left > last[i] {
				rotations[i]++
			}
			last[i] = left
		}
	}
	scrape()
	// Go on until the SVIDs the services started with have expired, with
	// two rotations seen in each.
	var firstExpiry time.Time
	for _, left := range last {
		if e := time.Now().Add(time.Duration(left * float64(time.Second))); e.After(firstExpiry) {
			firstExpiry = e
		}
	}
	tasks := 0
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for done := false; !done; {
		for range 20 {
			if _, err := client.Submit(ctx, req); err != nil {
				t.Fatalf("task %d failed during SVID rotation (rotations so far %v): %v", tasks+1, rotations, err)
			}
			tasks++
		}
		scrape()
		done = rotations[0] >= 2 && rotations[1] >= 2 && rotations[2] >= 2 && time.Now().After(firstExpiry.Add(2*time.Second))
	}
	t.Logf("%d tasks, SVID rotations registry/orchestrator/worker: %v", tasks, rotations)
	for _, s := range services {
		m := s.metrics(t)
		if f := counter(t, m, "grpc_auth_failures_total", nil) + counter(t, m, "grpc_jwt_auth_failures_total", nil); f != 0 {
			t.Errorf("%s: %v auth failures", s.name, f)
		}
	}
}
