// Package registry is the Neural Hive service-registry: worker-agents
// register their address and capabilities under leases that expire unless
// renewed by heartbeats, and the orchestrator-dynamic discovers live workers
// by capability (step C3 of Flow C).
//
// Every call is authenticated by mutual TLS with X509-SVIDs from the SPIRE
// agent (pkg/spiffegrpc.MTLSAuth) and authorized by SPIFFE ID: only the
// worker-agents ID may Register, Heartbeat and Deregister, only the
// orchestrator-dynamic ID may Discover. Refusals are counted in
// grpc_auth_attempts_total and grpc_auth_failures_total, the runbook's
// "High Authentication Failure Rate" signals, and logged as "Auth refused".
//
// Leases live in memory: a restarted registry starts empty and the workers
// register again at their next heartbeat (NotFound). The package does not
// check that a worker's address is reachable; the orchestrator finds out
// when it dispatches.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/workload"
	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
)

// Defaults of Config.
const (
	DefaultLeaseTTL  = 30 * time.Second
	DefaultMaxLeases = 1024
)

// Config configures a Registry.
type Config struct {
	// Listener is where the gRPC service is served. Required; Run closes it.
	Listener net.Listener
	// WorkloadAPIAddr is the SPIRE agent's Workload API,
	// "unix:///run/spire/sockets/agent.sock". Required.
	WorkloadAPIAddr string
	// ID is the service's own SPIFFE ID, picked when the agent issues the
	// process several SVIDs. Default flow.RegistryID.
	ID spiffeid.ID
	// WorkerID may Register, Heartbeat and Deregister. Default flow.WorkerID.
	WorkerID spiffeid.ID
	// OrchestratorID may Discover. Default flow.OrchestratorID.
	OrchestratorID spiffeid.ID
	// LeaseTTL is the lifetime of a lease without heartbeat. Default 30s;
	// workers are asked to heartbeat every LeaseTTL/3.
	LeaseTTL time.Duration
	// MaxLeases bounds the live leases. Default 1024.
	MaxLeases int
	// MaxConnectionAge recycles client connections (see
	// flow.ServerOptions). Default flow.DefaultMaxConnectionAge.
	MaxConnectionAge time.Duration
	// Registerer receives grpc_auth_*, hive_registry_leases and
	// spiffe_x509_svid_expiration_seconds. Nil: no metrics.
	Registerer prometheus.Registerer
	// Logger: nil discards.
	Logger *slog.Logger
	// Clock: nil is time.Now.
	Clock func() time.Time
}

// Registry is the service-registry. Create it with New and run it with Run.
type Registry struct {
	cfg     Config
	log     *slog.Logger
	leases  *leases
	metrics *spiffegrpc.Metrics
	sources atomic.Pointer[workload.Sources]
	ready   chan struct{}
}

// New checks cfg, fills its defaults and registers the metrics.
func New(cfg Config) (*Registry, error) {
	switch {
	case cfg.Listener == nil:
		return nil, errors.New("registry: no listener")
	case cfg.WorkloadAPIAddr == "":
		return nil, errors.New("registry: no Workload API address")
	case cfg.LeaseTTL < 0 || cfg.MaxLeases < 0:
		return nil, errors.New("registry: negative lease TTL or limit")
	}
	if cfg.ID.IsZero() {
		cfg.ID = flow.RegistryID
	}
	if cfg.WorkerID.IsZero() {
		cfg.WorkerID = flow.WorkerID
	}
	if cfg.OrchestratorID.IsZero() {
		cfg.OrchestratorID = flow.OrchestratorID
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.MaxLeases == 0 {
		cfg.MaxLeases = DefaultMaxLeases
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	r := &Registry{cfg: cfg, log: cfg.Logger, leases: newLeases(cfg.LeaseTTL, cfg.MaxLeases), ready: make(chan struct{})}
	if cfg.Registerer != nil {
		m, err := spiffegrpc.NewMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		r.metrics = m
		for _, c := range []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hive_registry_leases", Help: "Live worker leases in the service registry."},
				func() float64 { return float64(r.leases.count(cfg.Clock())) }),
			workload.NewSVIDExpiry(r.SVID, cfg.Clock),
		} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("registry: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Ready returns a channel closed once the registry has its X509-SVID and
// serves.
func (r *Registry) Ready() <-chan struct{} { return r.ready }

// SVID returns the registry's current X509-SVID, false before it has one.
func (r *Registry) SVID() (*x509svid.SVID, bool) {
	s := r.sources.Load()
	if s == nil {
		return nil, false
	}
	svid, err := s.X509.GetX509SVID()
	return svid, err == nil
}

// Policy is the registry's authorization: workerID may register, heartbeat
// and deregister; orchestratorID may discover; nothing else is allowed.
func Policy(workerID, orchestratorID spiffeid.ID) spiffegrpc.Authorizer {
	return spiffegrpc.AuthorizeMethods(map[string]spiffegrpc.Authorizer{
		flow.MethodRegister:   spiffegrpc.AuthorizeID(workerID),
		flow.MethodHeartbeat:  spiffegrpc.AuthorizeID(workerID),
		flow.MethodDeregister: spiffegrpc.AuthorizeID(workerID),
		flow.MethodDiscover:   spiffegrpc.AuthorizeID(orchestratorID),
	})
}

// Run waits for the registry's X509-SVID from the Workload API, then serves
// the Registry service over mTLS and expires leases until ctx is done. It
// returns nil on cancellation and closes the listener.
func (r *Registry) Run(ctx context.Context) error {
	defer r.cfg.Listener.Close()
	src, err := workload.Open(ctx, workload.Config{Addr: r.cfg.WorkloadAPIAddr, ID: r.cfg.ID, Logger: r.log})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("registry: %w", err)
	}
	defer src.Close()
	r.sources.Store(src)

	auth, err := spiffegrpc.NewMTLSAuth(src.X509, src.X509, Policy(r.cfg.WorkerID, r.cfg.OrchestratorID),
		spiffegrpc.WithMetrics(r.metrics), spiffegrpc.WithLogger(r.log), spiffegrpc.WithClock(r.cfg.Clock))
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	srv := grpc.NewServer(append(auth.ServerOptions(), flow.ServerOptions(r.cfg.MaxConnectionAge)...)...)
	flow.RegisterRegistry(srv, &service{r: r})

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return flow.Serve(ctx, srv, r.cfg.Listener) })
	g.Go(func() error { return r.expireLeases(ctx) })
	r.log.Info("Service registry serving", telemetry.Address, r.cfg.Listener.Addr().String(),
		"lease_ttl", r.cfg.LeaseTTL.String())
	close(r.ready)
	return g.Wait()
}

// expireLeases removes expired leases every LeaseTTL/2 and logs each one,
// until ctx is done.
func (r *Registry) expireLeases(ctx context.Context) error {
	t := time.NewTicker(r.cfg.LeaseTTL / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for _, in := range r.leases.sweep(r.cfg.Clock()) {
				r.log.Warn("Worker lease expired", "instance_id", in.InstanceID, telemetry.SPIFFEID, in.SPIFFEID,
					telemetry.Address, in.Address, telemetry.ExpiresAt, in.ExpiresAt.UTC().Format(time.RFC3339))
			}
		}
	}
}
