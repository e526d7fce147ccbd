// Package flowtest runs the three Flow C services in-process for tests:
// the real registry, orchestrator and worker, each with its own fake
// Workload API (spiffegrpctest) serving an SVID of one test CA, on real
// loopback TCP listeners. It also gives clients with CA-minted SVIDs and
// reads counters from the services' metric registries.
//
// It is for tests only: the SVIDs come from a CA in memory, not from SPIRE
// (test/flowc runs the real processes).
package flowtest

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/orchestrator"
	"github.com/neural-hive/hive-identity/internal/hive/registry"
	"github.com/neural-hive/hive-identity/internal/hive/worker"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Options shape a Plane.
type Options struct {
	// LeaseTTL of the registry; 0 is its default.
	LeaseTTL time.Duration
	// NoWorker starts no worker.
	NoWorker bool
	// OrchestratorID is the ID in the orchestrator's SVID. Default
	// flow.OrchestratorID, the one the registry accepts.
	OrchestratorID spiffeid.ID
}

// Plane is a running registry, orchestrator and (unless Options.NoWorker)
// worker of trust domain neural-hive.local. Everything stops at the end
// of the test.
type Plane struct {
	CA             *spiffegrpctest.CA
	OrchestratorID spiffeid.ID

	Registry        *registry.Registry
	RegistryAddr    string
	RegistryMetrics *prometheus.Registry
	RegistryLogs    *spiffegrpctest.LogBuffer

	Orchestrator        *orchestrator.Orchestrator
	OrchestratorAddr    string
	OrchestratorMetrics *prometheus.Registry
	OrchestratorLogs    *spiffegrpctest.LogBuffer

	Worker        *worker.Worker
	WorkerAddr    string
	WorkerMetrics *prometheus.Registry
	WorkerLogs    *spiffegrpctest.LogBuffer
}

// TrustDomain is the plane's trust domain.
var TrustDomain = flow.RegistryID.TrustDomain()

// Start starts a plane and waits until the worker (if any) is registered.
func Start(tb testing.TB, opts Options) *Plane {
	tb.Helper()
	p := &Plane{CA: spiffegrpctest.NewCA(tb, TrustDomain), OrchestratorID: opts.OrchestratorID}
	if p.OrchestratorID.IsZero() {
		p.OrchestratorID = flow.OrchestratorID
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	running := 0
	tb.Cleanup(func() {
		cancel()
		for range running {
			<-done
		}
	})
	run := func(name string, r interface{ Run(context.Context) error }) {
		running++
		go func() {
			defer func() { done <- struct{}{} }()
			if err := r.Run(ctx); err != nil {
				tb.Errorf("%s: %v", name, err)
			}
		}()
	}

	lis := Listen(tb)
	p.RegistryAddr, p.RegistryMetrics = lis.Addr().String(), prometheus.NewRegistry()
	log, logs := spiffegrpctest.NewLogger(tb)
	p.RegistryLogs = logs
	reg, err := registry.New(registry.Config{Listener: lis, WorkloadAPIAddr: p.WorkloadAPI(tb, flow.RegistryID, false),
		LeaseTTL: opts.LeaseTTL, Registerer: p.RegistryMetrics, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	p.Registry = reg
	run("registry", reg)

	lis = Listen(tb)
	p.OrchestratorAddr, p.OrchestratorMetrics = lis.Addr().String(), prometheus.NewRegistry()
	log, p.OrchestratorLogs = spiffegrpctest.NewLogger(tb)
	orch, err := orchestrator.New(orchestrator.Config{Listener: lis, WorkloadAPIAddr: p.WorkloadAPI(tb, p.OrchestratorID, true),
		RegistryAddr: p.RegistryAddr, Registerer: p.OrchestratorMetrics, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	p.Orchestrator = orch
	run("orchestrator", orch)

	wait(tb, "registry", reg.Ready())
	wait(tb, "orchestrator", orch.Ready())
	if opts.NoWorker {
		return p
	}
	lis = Listen(tb)
	p.WorkerAddr, p.WorkerMetrics = lis.Addr().String(), prometheus.NewRegistry()
	log, p.WorkerLogs = spiffegrpctest.NewLogger(tb)
	w, err := worker.New(worker.Config{Listener: lis, WorkloadAPIAddr: p.WorkloadAPI(tb, flow.WorkerID, false),
		RegistryAddr: p.RegistryAddr, Registerer: p.WorkerMetrics, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	p.Worker = w
	run("worker", w)
	WaitFor(tb, "worker registration", w.Registered)
	return p
}

// WorkloadAPI starts a fake Workload API serving an X509-SVID for id (and
// the JWT bundle when jwt is set) and returns its address.
func (p *Plane) WorkloadAPI(tb testing.TB, id spiffeid.ID, jwt bool) string {
	tb.Helper()
	api := spiffegrpctest.NewWorkloadAPI(tb)
	if err := api.SetX509(p.CA.X509SVID(tb, id), p.CA.X509Bundle()); err != nil {
		tb.Fatal(err)
	}
	if jwt {
		if err := api.SetJWTBundles(p.CA.JWTBundle()); err != nil {
			tb.Fatal(err)
		}
	}
	return api.Addr()
}

// Submitter returns an orchestrator client that sends token over TLS,
// verifying the orchestrator's X509-SVID.
func (p *Plane) Submitter(tb testing.TB, token string) flow.OrchestratorClient {
	tb.Helper()
	conn, err := grpc.NewClient(p.OrchestratorAddr,
		grpc.WithTransportCredentials(grpccredentials.TLSClientCredentials(p.CA.X509Bundle(), tlsconfig.AuthorizeID(p.OrchestratorID))),
		grpc.WithPerRPCCredentials(Token(token)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return flow.NewOrchestratorClient(conn)
}

// Dial returns a connection to addr that presents svid (nil: no client
// certificate) and verifies the server as serverID against the plane's CA.
func (p *Plane) Dial(tb testing.TB, addr string, svid *x509svid.SVID, serverID spiffeid.ID) *grpc.ClientConn {
	tb.Helper()
	var tc *tls.Config
	if svid != nil {
		tc = tlsconfig.MTLSClientConfig(svid, p.CA.X509Bundle(), tlsconfig.AuthorizeID(serverID))
	} else {
		tc = tlsconfig.TLSClientConfig(p.CA.X509Bundle(), tlsconfig.AuthorizeID(serverID))
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// Token is per-RPC credentials sending one bearer token.
type Token string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t Token) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (Token) RequireTransportSecurity() bool { return true }

// Listen returns a loopback TCP listener on a free port.
func Listen(tb testing.TB) net.Listener {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return lis
}

func wait(tb testing.TB, what string, ch <-chan struct{}) {
	tb.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s not ready after 30s", what)
	}
}

// WaitFor polls cond until it holds, failing the test after 30s.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
