// Package orchestrator is the Neural Hive orchestrator-dynamic: it accepts
// task submissions authenticated by a JWT-SVID whose audience is its own
// SPIFFE ID (pkg/spiffegrpc.JWTAuth, grpc_jwt_auth_* metrics), discovers the
// workers offering the task's capability at the service-registry (step C3
// of Flow C) and dispatches the task to one of them, returning its result.
//
// Both outgoing calls use mutual TLS with the orchestrator's X509-SVID and
// verify the peer's SPIFFE ID: the registry's, and for workers the
// worker-agents ID (which the registry also reports for each instance).
// Workers are picked round robin; one that is unreachable is skipped and
// the next is tried (at most three per task).
//
// The package does not queue or retry tasks after a failure, and keeps no
// task history.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/workload"
	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
)

// Defaults and limits.
const (
	DefaultDispatchTimeout = 30 * time.Second
	// MaxPayload bounds a task's payload.
	MaxPayload = 1 << 20
	// maxAttempts bounds the workers tried for one task.
	maxAttempts = 3
	// maxWorkerConns bounds the cached connections to workers.
	maxWorkerConns = 256
)

// Config configures an Orchestrator.
type Config struct {
	// Listener is where the Orchestrator service is served (TLS with the
	// orchestrator's X509-SVID). Required; Run closes it.
	Listener net.Listener
	// WorkloadAPIAddr is the SPIRE agent's Workload API,
	// "unix:///run/spire/sockets/agent.sock". Required.
	WorkloadAPIAddr string
	// ID is the service's own SPIFFE ID, picked when the agent issues the
	// process several SVIDs. Default flow.OrchestratorID.
	ID spiffeid.ID
	// RegistryAddr is the service-registry's host:port. Required.
	RegistryAddr string
	// RegistryID is the SPIFFE ID the registry must present. Default
	// flow.RegistryID.
	RegistryID spiffeid.ID
	// WorkerID is the SPIFFE ID workers must present. Default flow.WorkerID.
	WorkerID spiffeid.ID
	// Submitters decides who may submit tasks. Default: any SPIFFE ID of
	// the orchestrator's own trust domain.
	Submitters spiffegrpc.Authorizer
	// DispatchTimeout bounds C3 discovery plus dispatch of one task, within
	// the submitter's own deadline. Default 30s.
	DispatchTimeout time.Duration
	// MaxConnectionAge recycles client connections (see
	// flow.ServerOptions). Default flow.DefaultMaxConnectionAge.
	MaxConnectionAge time.Duration
	// Registerer receives grpc_jwt_auth_*, hive_orchestrator_tasks_total and
	// spiffe_x509_svid_expiration_seconds. Nil: no metrics.
	Registerer prometheus.Registerer
	// Logger: nil discards.
	Logger *slog.Logger
	// Clock: nil is time.Now.
	Clock func() time.Time
}

// Orchestrator is the orchestrator-dynamic. Create it with New and run it
// with Run.
type Orchestrator struct {
	cfg     Config
	log     *slog.Logger
	metrics *spiffegrpc.Metrics
	tasks   *prometheus.CounterVec
	sources atomic.Pointer[workload.Sources]
	ready   chan struct{}
	next    atomic.Uint64

	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn
	registry flow.RegistryClient
}

// New checks cfg, fills its defaults and registers the metrics.
func New(cfg Config) (*Orchestrator, error) {
	switch {
	case cfg.Listener == nil:
		return nil, errors.New("orchestrator: no listener")
	case cfg.WorkloadAPIAddr == "":
		return nil, errors.New("orchestrator: no Workload API address")
	case cfg.RegistryAddr == "":
		return nil, errors.New("orchestrator: no registry address")
	}
	if cfg.ID.IsZero() {
		cfg.ID = flow.OrchestratorID
	}
	if cfg.RegistryID.IsZero() {
		cfg.RegistryID = flow.RegistryID
	}
	if cfg.WorkerID.IsZero() {
		cfg.WorkerID = flow.WorkerID
	}
	if cfg.DispatchTimeout <= 0 {
		cfg.DispatchTimeout = DefaultDispatchTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	o := &Orchestrator{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), conns: make(map[string]*grpc.ClientConn)}
	o.tasks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hive_orchestrator_tasks_total",
		Help: "Flow C tasks by result: success, invalid, discovery_failed (C3), no_worker, dispatch_failed."}, []string{"result"})
	if cfg.Registerer != nil {
		m, err := spiffegrpc.NewMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("orchestrator: %w", err)
		}
		o.metrics = m
		for _, c := range []prometheus.Collector{o.tasks, workload.NewSVIDExpiry(o.SVID, cfg.Clock)} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("orchestrator: register metrics: %w", err)
			}
		}
	}
	return o, nil
}

// Ready returns a channel closed once the orchestrator has its identity
// and serves.
func (o *Orchestrator) Ready() <-chan struct{} { return o.ready }

// SVID returns the orchestrator's current X509-SVID, false before it has one.
func (o *Orchestrator) SVID() (*x509svid.SVID, bool) {
	s := o.sources.Load()
	if s == nil {
		return nil, false
	}
	svid, err := s.X509.GetX509SVID()
	return svid, err == nil
}

// Run waits for the orchestrator's X509-SVID and JWT bundles, then serves
// the Orchestrator service until ctx is done. The JWT-SVID audience is the
// SPIFFE ID of its X509-SVID at that moment. It returns nil on cancellation
// and closes the listener and every connection it opened.
func (o *Orchestrator) Run(ctx context.Context) error {
	defer o.cfg.Listener.Close()
	src, err := workload.Open(ctx, workload.Config{Addr: o.cfg.WorkloadAPIAddr, ID: o.cfg.ID, JWT: true, Logger: o.log})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("orchestrator: %w", err)
	}
	defer src.Close()
	o.sources.Store(src)
	svid, err := src.X509.GetX509SVID()
	if err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	submitters := o.cfg.Submitters
	if submitters == nil {
		submitters = spiffegrpc.AuthorizeMemberOf(svid.ID.TrustDomain())
	}
	auth, err := spiffegrpc.NewJWTAuth(src.JWT, svid.ID.String(),
		spiffegrpc.AuthorizeMethods(map[string]spiffegrpc.Authorizer{flow.MethodSubmit: submitters}),
		spiffegrpc.WithMetrics(o.metrics), spiffegrpc.WithLogger(o.log), spiffegrpc.WithClock(o.cfg.Clock))
	if err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	opts := append(auth.ServerOptions(), grpc.Creds(grpccredentials.TLSServerCredentials(src.X509)))
	srv := grpc.NewServer(append(opts, flow.ServerOptions(o.cfg.MaxConnectionAge)...)...)
	flow.RegisterOrchestrator(srv, &service{o: o})

	regConn, err := grpc.NewClient(o.cfg.RegistryAddr, grpc.WithTransportCredentials(
		grpccredentials.MTLSClientCredentials(src.X509, src.X509, tlsconfig.AuthorizeID(o.cfg.RegistryID))))
	if err != nil {
		return fmt.Errorf("orchestrator: registry client: %w", err)
	}
	defer regConn.Close()
	o.registry = flow.NewRegistryClient(regConn)
	defer o.closeWorkerConns()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return flow.Serve(gctx, srv, o.cfg.Listener) })
	o.log.Info("Orchestrator serving", telemetry.Address, o.cfg.Listener.Addr().String(), telemetry.Audience, svid.ID.String())
	close(o.ready)
	return g.Wait()
}

// workerConn returns the cached mTLS connection to a worker's address.
func (o *Orchestrator) workerConn(addr string) (*grpc.ClientConn, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.conns[addr]; ok {
		return c, nil
	}
	if len(o.conns) >= maxWorkerConns {
		for a, c := range o.conns { // drop any one
			_ = c.Close()
			delete(o.conns, a)
			break
		}
	}
	src := o.sources.Load()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(
		grpccredentials.MTLSClientCredentials(src.X509, src.X509, tlsconfig.AuthorizeID(o.cfg.WorkerID))))
	if err != nil {
		return nil, fmt.Errorf("orchestrator: worker client: %w", err)
	}
	o.conns[addr] = c
	return c, nil
}

// dropWorkerConn closes the connection to an unreachable worker.
func (o *Orchestrator) dropWorkerConn(addr string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.conns[addr]; ok {
		_ = c.Close()
		delete(o.conns, addr)
	}
}

func (o *Orchestrator) closeWorkerConns() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for a, c := range o.conns {
		_ = c.Close()
		delete(o.conns, a)
	}
}
