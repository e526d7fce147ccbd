// Package worker is the Neural Hive worker-agents: it registers its address
// and capabilities at the service-registry, keeps the lease alive with
// heartbeats, executes the tasks the orchestrator-dynamic dispatches to it
// (jobs.go: SHA-256 digests and word counts) and deregisters on shutdown.
//
// Its identity is the X509-SVID the SPIRE agent gives it. It calls the
// registry over mTLS, verifying the registry's SPIFFE ID, and serves its
// Worker service over mTLS to the orchestrator's SPIFFE ID only
// (pkg/spiffegrpc.MTLSAuth, grpc_auth_* metrics).
//
// A worker without identity (no registration entry matches it) cannot
// register. With a trust bundle (Config.TrustBundle) it still calls the
// registry without a client certificate, so that the refusal is seen where
// the runbook looks for it ("High Authentication Failure Rate": the
// registry's grpc_auth_failures_total and its "Auth refused" log lines),
// and keeps retrying until the agent issues its SVID.
//
// The package does not choose which worker gets a task (the orchestrator
// does) and keeps no task state.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/workload"
	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Defaults of Config.
const (
	DefaultSVIDTimeout   = 10 * time.Second
	DefaultRetryInterval = 5 * time.Second
)

// callTimeout bounds each call to the registry.
const callTimeout = 10 * time.Second

// Config configures a Worker.
type Config struct {
	// Listener is where the Worker service is served. Required; Run closes it.
	Listener net.Listener
	// AdvertiseAddr is the host:port registered for the orchestrator to dial.
	// Default: the listener's address.
	AdvertiseAddr string
	// WorkloadAPIAddr is the SPIRE agent's Workload API,
	// "unix:///run/spire/sockets/agent.sock". Required.
	WorkloadAPIAddr string
	// ID is the service's own SPIFFE ID, picked when the agent issues the
	// process several SVIDs. Default flow.WorkerID.
	ID spiffeid.ID
	// RegistryAddr is the service-registry's host:port. Required.
	RegistryAddr string
	// RegistryID is the SPIFFE ID the registry must present. Default
	// flow.RegistryID.
	RegistryID spiffeid.ID
	// OrchestratorID is the only ID that may dispatch tasks. Default
	// flow.OrchestratorID.
	OrchestratorID spiffeid.ID
	// Capabilities are registered and executed. Default: all of
	// Capabilities().
	Capabilities []string
	// SVIDTimeout is how long to wait for an X509-SVID before reporting
	// that the worker has no identity. Default 10s.
	SVIDTimeout time.Duration
	// RetryInterval spaces registration attempts that failed. Default 5s.
	RetryInterval time.Duration
	// TrustBundle, if set, verifies the registry while the worker has no
	// SVID of its own (see the package comment). Usually the bundle the
	// agent bootstraps from (`spire-server bundle show`).
	TrustBundle *x509bundle.Bundle
	// MaxConnectionAge recycles client connections (see
	// flow.ServerOptions). Default flow.DefaultMaxConnectionAge.
	MaxConnectionAge time.Duration
	// Registerer receives grpc_auth_*, hive_worker_* and
	// spiffe_x509_svid_expiration_seconds. Nil: no metrics.
	Registerer prometheus.Registerer
	// Logger: nil discards.
	Logger *slog.Logger
	// Clock: nil is time.Now.
	Clock func() time.Time
}

// Worker is a worker-agents instance. Create it with New and run it with Run.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	metrics  *spiffegrpc.Metrics
	tasks    *prometheus.CounterVec
	sources  atomic.Pointer[workload.Sources]
	instance atomic.Pointer[string]
}

// New checks cfg, fills its defaults and registers the metrics.
func New(cfg Config) (*Worker, error) {
	switch {
	case cfg.Listener == nil:
		return nil, errors.New("worker: no listener")
	case cfg.WorkloadAPIAddr == "":
		return nil, errors.New("worker: no Workload API address")
	case cfg.RegistryAddr == "":
		return nil, errors.New("worker: no registry address")
	}
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = cfg.Listener.Addr().String()
	}
	if cfg.ID.IsZero() {
		cfg.ID = flow.WorkerID
	}
	if cfg.RegistryID.IsZero() {
		cfg.RegistryID = flow.RegistryID
	}
	if cfg.OrchestratorID.IsZero() {
		cfg.OrchestratorID = flow.OrchestratorID
	}
	if len(cfg.Capabilities) == 0 {
		cfg.Capabilities = Capabilities()
	}
	for _, c := range cfg.Capabilities {
		if !slices.Contains(Capabilities(), c) {
			return nil, fmt.Errorf("%w %q (supported: %v)", ErrUnsupported, c, Capabilities())
		}
	}
	if cfg.SVIDTimeout <= 0 {
		cfg.SVIDTimeout = DefaultSVIDTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	w := &Worker{cfg: cfg, log: cfg.Logger}
	w.tasks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hive_worker_tasks_total", Help: "Tasks executed by the worker, by capability and result."},
		[]string{"capability", "result"})
	if cfg.Registerer != nil {
		m, err := spiffegrpc.NewMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		w.metrics = m
		for _, c := range []prometheus.Collector{
			w.tasks,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hive_worker_registered", Help: "1 while the worker holds a lease at the service registry."},
				func() float64 {
					if w.Registered() {
						return 1
					}
					return 0
				}),
			workload.NewSVIDExpiry(w.SVID, cfg.Clock),
		} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("worker: register metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Registered reports whether the worker holds a lease at the registry.
func (w *Worker) Registered() bool { return w.instance.Load() != nil }

// SVID returns the worker's current X509-SVID, false while it has none.
func (w *Worker) SVID() (*x509svid.SVID, bool) {
	s := w.sources.Load()
	if s == nil {
		return nil, false
	}
	svid, err := s.X509.GetX509SVID()
	return svid, err == nil
}

func (w *Worker) registerRequest() *flow.RegisterRequest {
	return &flow.RegisterRequest{Address: w.cfg.AdvertiseAddr, Capabilities: slices.Clone(w.cfg.Capabilities)}
}

// Run waits for the worker's X509-SVID, then serves the Worker service and
// keeps the worker registered until ctx is done; it then deregisters
// (bounded by 10s) and stops. It returns nil on cancellation and closes the
// listener.
func (w *Worker) Run(ctx context.Context) error {
	defer w.cfg.Listener.Close()
	src, err := w.waitIdentity(ctx)
	if src == nil {
		return err
	}
	defer src.Close()
	w.sources.Store(src)

	auth, err := spiffegrpc.NewMTLSAuth(src.X509, src.X509,
		spiffegrpc.AuthorizeMethods(map[string]spiffegrpc.Authorizer{flow.MethodExecute: spiffegrpc.AuthorizeID(w.cfg.OrchestratorID)}),
		spiffegrpc.WithMetrics(w.metrics), spiffegrpc.WithLogger(w.log), spiffegrpc.WithClock(w.cfg.Clock))
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	srv := grpc.NewServer(append(auth.ServerOptions(), flow.ServerOptions(w.cfg.MaxConnectionAge)...)...)
	flow.RegisterWorker(srv, &service{w: w})

	conn, err := grpc.NewClient(w.cfg.RegistryAddr, grpc.WithTransportCredentials(
		grpccredentials.MTLSClientCredentials(src.X509, src.X509, tlsconfig.AuthorizeID(w.cfg.RegistryID))))
	if err != nil {
		return fmt.Errorf("worker: registry client: %w", err)
	}
	defer conn.Close()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return flow.Serve(gctx, srv, w.cfg.Listener) })
	g.Go(func() error { return w.keepRegistered(gctx, flow.NewRegistryClient(conn)) })
	w.log.Info("Worker serving", telemetry.Address, w.cfg.Listener.Addr().String(),
		"advertise", w.cfg.AdvertiseAddr, "capabilities", w.cfg.Capabilities)
	return g.Wait()
}

// waitIdentity returns the worker's sources once the agent has issued its
// X509-SVID. After SVIDTimeout without one it reports the missing identity
// and, with a trust bundle, calls the registry without a client certificate
// every RetryInterval. It returns (nil, nil) when ctx ends first.
func (w *Worker) waitIdentity(ctx context.Context) (*workload.Sources, error) {
	type opened struct {
		src *workload.Sources
		err error
	}
	openCtx, cancel := context.WithCancel(ctx)
	done := make(chan opened, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		src, err := workload.Open(openCtx, workload.Config{Addr: w.cfg.WorkloadAPIAddr, ID: w.cfg.ID, Logger: w.log})
		done <- opened{src, err}
	})
	result := func(o opened) (*workload.Sources, error) {
		if o.err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, fmt.Errorf("worker: %w", o.err)
		}
		return o.src, nil
	}
	stop := func() (*workload.Sources, error) {
		cancel()
		wg.Wait()
		if o := <-done; o.src != nil {
			o.src.Close()
		}
		return nil, nil
	}

	timer := time.NewTimer(w.cfg.SVIDTimeout)
	defer timer.Stop()
	select {
	case o := <-done:
		return result(o)
	case <-ctx.Done():
		return stop()
	case <-timer.C:
	}
	w.log.Warn("No X509-SVID: cannot register at the service registry", telemetry.SocketPath, w.cfg.WorkloadAPIAddr,
		telemetry.Hint, "create a registration entry for worker-agents whose selectors match this process")
	for {
		if w.cfg.TrustBundle != nil {
			w.registerWithoutSVID(ctx)
		}
		timer.Reset(w.cfg.RetryInterval)
		select {
		case o := <-done:
			return result(o)
		case <-ctx.Done():
			return stop()
		case <-timer.C:
		}
	}
}

// registerWithoutSVID calls Register with no client certificate, verifying
// the registry against the trust bundle, and logs the outcome: the registry
// refuses it with UNAUTHENTICATED and counts the failure.
func (w *Worker) registerWithoutSVID(ctx context.Context) {
	tc := tlsconfig.TLSClientConfig(w.cfg.TrustBundle, tlsconfig.AuthorizeID(w.cfg.RegistryID))
	conn, err := grpc.NewClient(w.cfg.RegistryAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		w.log.Error("Registration failed", telemetry.Error, err.Error())
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	reg := flow.NewRegistryClient(conn)
	lease, err := reg.Register(ctx, w.registerRequest())
	if err != nil {
		w.log.Error("Registration refused without X509-SVID", telemetry.Code, status.Code(err).String(), telemetry.Error, status.Convert(err).Message())
		return
	}
	// A registry that accepts a worker without identity is misconfigured:
	// take the lease back rather than be dispatched tasks it cannot serve.
	w.log.Error("Service registry accepted a worker without X509-SVID", "instance_id", lease.InstanceID)
	_, _ = reg.Deregister(ctx, &flow.DeregisterRequest{InstanceID: lease.InstanceID})
}

// registryClient is what keepRegistered calls.
type registryClient interface {
	Register(context.Context, *flow.RegisterRequest, ...grpc.CallOption) (*flow.Lease, error)
	Heartbeat(context.Context, *flow.HeartbeatRequest, ...grpc.CallOption) (*flow.Lease, error)
	Deregister(context.Context, *flow.DeregisterRequest, ...grpc.CallOption) (*flow.Empty, error)
}

// keepRegistered registers the worker, heartbeats at the interval the
// registry asks for, registers again when the lease is lost (NotFound), and
// deregisters when ctx is done. It returns nil.
func (w *Worker) keepRegistered(ctx context.Context, reg registryClient) error {
	for {
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		lease, err := reg.Register(callCtx, w.registerRequest())
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.log.Error("Registration failed", telemetry.Code, status.Code(err).String(), telemetry.Error, status.Convert(err).Message(),
				telemetry.RetryInterval, w.cfg.RetryInterval.String())
			if !sleep(ctx, w.cfg.RetryInterval) {
				return nil
			}
			continue
		}
		id := lease.InstanceID
		w.instance.Store(&id)
		w.log.Info("Registered at the service registry", "instance_id", id,
			telemetry.ExpiresAt, lease.ExpiresAt.UTC().Format(time.RFC3339))
		if lost := w.heartbeat(ctx, reg, lease); !lost {
			return nil
		}
		w.instance.Store(nil)
	}
}

// heartbeat renews lease until ctx is done (then deregisters and returns
// false) or the registry no longer knows it (returns true).
func (w *Worker) heartbeat(ctx context.Context, reg registryClient, lease *flow.Lease) (lost bool) {
	id := lease.InstanceID
	interval := lease.HeartbeatInterval
	for {
		if interval <= 0 {
			interval = w.cfg.RetryInterval
		}
		if !sleep(ctx, interval) {
			w.deregister(ctx, reg, id)
			return false
		}
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		next, err := reg.Heartbeat(callCtx, &flow.HeartbeatRequest{InstanceID: id})
		cancel()
		switch {
		case err == nil:
			interval = next.HeartbeatInterval
		case status.Code(err) == codes.NotFound:
			w.log.Warn("Lease lost, registering again", "instance_id", id)
			return true
		case ctx.Err() != nil:
			w.deregister(ctx, reg, id)
			return false
		default:
			w.log.Warn("Heartbeat failed", "instance_id", id, telemetry.Code, status.Code(err).String(), telemetry.Error, status.Convert(err).Message())
			interval = w.cfg.RetryInterval
		}
	}
}

func (w *Worker) deregister(ctx context.Context, reg registryClient, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	w.instance.Store(nil)
	if _, err := reg.Deregister(ctx, &flow.DeregisterRequest{InstanceID: id}); err != nil {
		w.log.Warn("Deregistration failed", "instance_id", id, telemetry.Code, status.Code(err).String(), telemetry.Error, status.Convert(err).Message())
		return
	}
	w.log.Info("Deregistered from the service registry", "instance_id", id)
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
