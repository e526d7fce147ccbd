// Package agent is spire-agent's runtime: agent.go is the only place that
// wires the agent's parts. New opens data_dir and the key manager and builds
// the server client, the cache and the Workload API server; Run attests the
// node (or loads the stored SVID) and then runs, composed with errgroup,
// the agent SVID renewal, the sync loop and the Workload API until the
// context ends or one of them fails.
//
// The package does not read agent.conf or flags: the CLI
// (internal/agent/cli) converts config.Agent into Config.
package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/agent/nodeattest"
	"github.com/neural-hive/hive-identity/internal/agent/storage"
	"github.com/neural-hive/hive-identity/internal/agent/sync"
	"github.com/neural-hive/hive-identity/internal/agent/workloadapi"
	"github.com/neural-hive/hive-identity/internal/agent/workloadattest"
	"github.com/neural-hive/hive-identity/internal/health"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// Key manager kinds (the agent's KeyManager plugin).
const (
	KeyManagerDisk   = "disk"
	KeyManagerMemory = "memory"
)

// Config is the agent's typed configuration. The CLI fills it from
// config.Agent:
//
//	TrustDomain        agent.trust_domain
//	ServerAddress      net.JoinHostPort(server_address, server_port)
//	TrustBundle        LoadTrustBundle(trust_bundle_path, trust_bundle_format)
//	InsecureBootstrap  insecure_bootstrap
//	RetryBootstrap     retry_bootstrap (config default true)
//	DataDir            data_dir
//	KeyManager         KeyManager plugin: "disk" (KeyManagerDir = plugin_data.directory) or "memory"
//	NodeAttestor       nodeattest.NewJoinToken(join_token) when join_token is set
//	                   (as SPIRE: it wins over the NodeAttestor plugin), else the
//	                   NodeAttestor plugin's attestor (x509pop)
//	SocketPath         socket_path
//	UnixAttestor       WorkloadAttestor "unix" plugin_data; nil when not declared
//	PollInterval       experimental.sync_interval
//	WorkloadKeyType    workload_x509_svid_key_type
//	JWTSVIDCacheSize   jwt_svid_cache_max_size
//	AllowedForeignJWTClaims  allowed_foreign_jwt_claims
//	Telemetry          telemetry { Prometheus { host port } }
//	HealthChecks       health_checks
//	Logger             the logger built from log_level/log_format/log_file
type Config struct {
	// TrustDomain is the agent's trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// ServerAddress is the server's TCP endpoint, "host:port". Required.
	ServerAddress string
	// TrustBundle holds the bootstrap X.509 authorities; used while data_dir
	// holds no bundle. Required unless InsecureBootstrap.
	TrustBundle []*x509.Certificate
	// InsecureBootstrap attests without verifying the server's chain, only
	// its SPIFFE ID (spiffe://<td>/spire/server).
	InsecureBootstrap bool
	// RetryBootstrap retries a failed attestation with backoff while the
	// server is unreachable; false fails Run at the first failure.
	RetryBootstrap bool
	// DataDir keeps the agent SVID and bundle. Required.
	DataDir string
	// KeyManager is KeyManagerDisk (the default when empty) or
	// KeyManagerMemory.
	KeyManager string
	// KeyManagerDir is where the disk key manager writes keys (mode 0600).
	// Empty: DataDir/keys.
	KeyManagerDir string
	// NodeAttestor attests the node when no usable SVID is stored. Nil: the
	// agent runs only with a stored SVID.
	NodeAttestor nodeattest.Attestor
	// SocketPath is the Workload API's unix socket. Required.
	SocketPath string
	// SocketMode and SocketDirMode are the modes of the socket and its
	// directory; zero means workloadapi's defaults (world-connectable, as
	// SPIRE).
	SocketMode    fs.FileMode
	SocketDirMode fs.FileMode
	// UnixAttestor configures the unix workload attestor; nil disables it
	// (then no workload gets selectors and nothing matches).
	UnixAttestor *workloadattest.UnixConfig
	// K8sAttestor configures the k8s workload attestor; nil disables it. With
	// both, a workload's selectors are the union of the two.
	K8sAttestor *workloadattest.K8sConfig
	// PollInterval is the sync period against a server without push.
	// Zero: 5 s.
	PollInterval time.Duration
	// SyncInterval is the safety sync period while push works. Zero: 30 s.
	SyncInterval time.Duration
	// WorkloadKeyType is "ec-p256" (default when empty) or "rsa-2048".
	WorkloadKeyType string
	// JWTSVIDCacheSize bounds the cached JWT-SVIDs. Zero: 1000.
	JWTSVIDCacheSize int
	// AllowedForeignJWTClaims are returned for JWT-SVIDs of other trust
	// domains on validation.
	AllowedForeignJWTClaims []string
	// Logger receives the agent's logs. Nil: discarded.
	Logger *slog.Logger
	// Rand jitters retry delays. Nil: seeded from the runtime.
	Rand *rand.Rand
	// Telemetry is the telemetry block: with PrometheusEnabled, Run serves
	// Registry on PrometheusHost:PrometheusPort.
	Telemetry TelemetryConfig
	// HealthChecks is the health_checks block: with ListenerEnabled, Run
	// serves LivePath and ReadyPath; the same check answers the gRPC health
	// service on the Workload API socket (`spire-agent healthcheck`).
	HealthChecks HealthChecksConfig
	// Registry receives the agent's metrics (telemetry.AgentMetrics). Nil:
	// a new telemetry.NewRegistry().
	Registry *prometheus.Registry
}

// TelemetryConfig is the telemetry block (Prometheus only).
type TelemetryConfig struct {
	PrometheusEnabled bool
	PrometheusHost    string // default localhost
	PrometheusPort    int    // 0 picks a free port
}

// HealthChecksConfig is the health_checks block.
type HealthChecksConfig struct {
	ListenerEnabled bool
	BindAddress     string // default localhost
	BindPort        int    // 0 picks a free port; the config package fills SPIRE's 80
	LivePath        string // default /live
	ReadyPath       string // default /ready
}

// Agent is a configured agent. Run it once.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	client   *sync.Client
	cache    *cache.Cache
	workload *workloadapi.Server
	checker  *health.Checker
	exporter *telemetry.Exporter // nil without a Prometheus block
	synced   chan struct{}
}

// New checks cfg, opens data_dir and the key manager and builds the agent's
// parts. Nothing talks to the server and no socket is opened until Run.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.TrustDomain.IsZero():
		return nil, wrapErr(errors.New("trust domain is required"))
	case cfg.ServerAddress == "":
		return nil, wrapErr(errors.New("server address is required"))
	case cfg.DataDir == "":
		return nil, wrapErr(errors.New("data directory is required"))
	case cfg.SocketPath == "":
		return nil, wrapErr(errors.New("socket path is required"))
	case !cfg.InsecureBootstrap && len(cfg.TrustBundle) == 0:
		return nil, wrapErr(errors.New("a trust bundle is required unless insecure bootstrap is set"))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	store, err := storage.Open(cfg.DataDir)
	if err != nil {
		return nil, wrapErr(err)
	}
	var km sync.KeyManager
	switch cfg.KeyManager {
	case KeyManagerDisk, "":
		dir := cfg.KeyManagerDir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "keys")
		}
		if km, err = storage.NewDiskKeyManager(dir); err != nil {
			return nil, wrapErr(err)
		}
	case KeyManagerMemory:
		km = storage.NewMemoryKeyManager()
	default:
		return nil, wrapErr(fmt.Errorf("unknown key manager %q", cfg.KeyManager))
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, synced: make(chan struct{})}
	reg := cfg.Registry
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	metrics, err := telemetry.NewAgentMetrics(reg, telemetry.AgentSources{
		SVIDs:                 a.heldSVIDs,
		CacheEntries:          func() int { return a.cache.EntryCount() },
		CacheSVIDs:            func() int { return len(a.cache.X509SVIDValidity()) },
		BundleX509Authorities: func() int { return len(a.bundle().X509Authorities()) },
		BundleJWTAuthorities:  func() int { return len(a.bundle().JWTAuthorities()) },
	})
	if err != nil {
		return nil, wrapErr(err)
	}
	if cfg.Telemetry.PrometheusEnabled {
		if a.exporter, err = telemetry.New(telemetry.Config{
			Host: cfg.Telemetry.PrometheusHost, Port: cfg.Telemetry.PrometheusPort, Gatherer: reg, Logger: cfg.Logger,
		}); err != nil {
			return nil, wrapErr(err)
		}
	}
	if a.checker, err = health.New(health.Config{
		ListenerEnabled: cfg.HealthChecks.ListenerEnabled,
		BindAddress:     cfg.HealthChecks.BindAddress,
		BindPort:        cfg.HealthChecks.BindPort,
		LivePath:        cfg.HealthChecks.LivePath,
		ReadyPath:       cfg.HealthChecks.ReadyPath,
		Checks:          []health.Check{{Name: "agent", ErrorKey: "make_new_x509_err", Ready: a.checkReady, Live: a.checkLive}},
		Logger:          cfg.Logger,
	}); err != nil {
		return nil, wrapErr(err)
	}
	client, err := sync.NewClient(sync.ClientConfig{
		ServerAddress:     cfg.ServerAddress,
		TrustDomain:       cfg.TrustDomain,
		TrustBundle:       cfg.TrustBundle,
		InsecureBootstrap: cfg.InsecureBootstrap,
		Attestor:          cfg.NodeAttestor,
		AttestOnce:        !cfg.RetryBootstrap,
		Store:             store,
		KeyManager:        km,
		Logger:            cfg.Logger.With(telemetry.SubsystemName, "client"),
		Rand:              cfg.Rand,
		Metrics:           metrics,
	})
	if err != nil {
		return nil, wrapErr(err)
	}
	c, err := cache.New(cache.Config{
		TrustDomain: cfg.TrustDomain,
		JWTSigner:   client,
		MaxJWTSVIDs: cfg.JWTSVIDCacheSize,
		Logger:      cfg.Logger.With(telemetry.SubsystemName, "cache"),
	})
	if err != nil {
		return nil, wrapErr(err)
	}
	var attestors []workloadapi.Attestor
	// attestorName labels workload attestation failures: k8s when it runs
	// (its selectors are the ones that tell pods apart), else unix.
	attestorName := telemetry.Other
	if cfg.UnixAttestor != nil {
		attestors = append(attestors, workloadattest.NewUnix(*cfg.UnixAttestor))
		attestorName = "unix"
	}
	if cfg.K8sAttestor != nil {
		attestorName = "k8s"
		k, err := workloadattest.NewK8s(*cfg.K8sAttestor)
		if err != nil {
			return nil, wrapErr(err)
		}
		attestors = append(attestors, k)
	}
	attestor := combineAttestors(attestors)
	wl, err := workloadapi.New(workloadapi.Config{
		SocketPath:              cfg.SocketPath,
		SocketMode:              cfg.SocketMode,
		DirMode:                 cfg.SocketDirMode,
		TrustDomain:             cfg.TrustDomain,
		AllowedForeignJWTClaims: cfg.AllowedForeignJWTClaims,
		Cache:                   c,
		Attestor:                attestor,
		AttestorName:            attestorName,
		Metrics:                 metrics,
		UnaryInterceptors:       []grpc.UnaryServerInterceptor{metrics.UnaryServerInterceptor()},
		StreamInterceptors:      []grpc.StreamServerInterceptor{metrics.StreamServerInterceptor()},
		Health:                  a.checkReady,
		Logger:                  cfg.Logger.With(telemetry.SubsystemName, "endpoints"),
	})
	if err != nil {
		return nil, wrapErr(err)
	}
	a.client, a.cache, a.workload = client, c, wl
	return a, nil
}

// bundle returns the bundle of the agent's trust domain; an empty one
// before the first sync.
func (a *Agent) bundle() *spiffebundle.Bundle {
	if b := a.cache.Bundle(a.cfg.TrustDomain); b != nil {
		return b
	}
	return spiffebundle.New(a.cfg.TrustDomain)
}

// heldSVIDs are the X509-SVIDs the agent holds, for the
// spiffe_x509_svid_* gauges: the workload SVIDs of the cache and the
// agent's own SVID (its ID, spiffe://<td>/spire/agent/..., is never a
// workload's, so each spiffe_id still names one identity).
func (a *Agent) heldSVIDs() []telemetry.SVID {
	held := a.cache.X509SVIDValidity()
	out := make([]telemetry.SVID, 0, len(held)+1)
	for _, v := range held {
		out = append(out, telemetry.SVID{SPIFFEID: v.ID.String(), NotBefore: v.NotBefore, NotAfter: v.NotAfter})
	}
	if own := a.client.SVID(); own != nil && len(own.Certificates) > 0 {
		leaf := own.Certificates[0]
		out = append(out, telemetry.SVID{SPIFFEID: own.ID.String(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter})
	}
	return out
}

// checkReady is the agent's health, as SPIRE's "agent" subsystem: ready
// when the Workload API serves, the agent holds a valid SVID and the trust
// bundle. It answers ready_path and the gRPC health service.
func (a *Agent) checkReady(context.Context) error {
	select {
	case <-a.workload.Ready():
	default:
		return errors.New("workload api is unavailable")
	}
	own := a.client.SVID()
	if own == nil || len(own.Certificates) == 0 {
		return errors.New("agent has no SVID")
	}
	if now := time.Now(); !now.Before(own.Certificates[0].NotAfter) {
		return fmt.Errorf("agent SVID expired at %s", own.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	}
	if a.cache.Bundle(a.cfg.TrustDomain) == nil {
		return errors.New("trust bundle is not available")
	}
	return nil
}

// checkLive is live_path: alive while starting (attesting the node), then
// the same as ready, as SPIRE's agent.
func (a *Agent) checkLive(ctx context.Context) error {
	select {
	case <-a.workload.Ready():
		return a.checkReady(ctx)
	default:
		return nil
	}
}

func noSelectors(context.Context, int32) ([]string, error) { return nil, nil }

// combineAttestors runs every workload attestor and unions their selectors;
// any attestor's error fails the attestation (nothing is issued on a partial
// view of the caller).
func combineAttestors(as []workloadapi.Attestor) workloadapi.Attestor {
	switch len(as) {
	case 0:
		return workloadapi.AttestorFunc(noSelectors)
	case 1:
		return as[0]
	}
	return workloadapi.AttestorFunc(func(ctx context.Context, pid int32) ([]string, error) {
		var out []string
		for _, a := range as {
			sels, err := a.Attest(ctx, pid)
			if err != nil {
				return nil, err
			}
			out = append(out, sels...)
		}
		return out, nil
	})
}

// Run attests the node, or loads the SVID stored in data_dir, then serves
// until ctx ends (nil) or a part fails (its error): the agent SVID renewal,
// the sync loop and the Workload API run together and the first error
// stops all. The health and Prometheus listeners (when enabled) serve from
// the start, so node attestation failures show before the agent runs. A
// server refusing the agent ends Run with an error wrapping
// sync.ErrAgentRefused. Run blocks; it closes the connection to the server
// and removes the socket before returning.
func (a *Agent) Run(ctx context.Context) error {
	defer a.client.Close()
	g, gctx := errgroup.WithContext(ctx)
	if a.exporter != nil {
		g.Go(func() error { return a.exporter.Run(gctx) })
	}
	g.Go(func() error { return a.checker.Run(gctx) })
	g.Go(func() error { return a.run(gctx) })
	if err := g.Wait(); err != nil {
		a.log.Error("Agent stopped", telemetry.Error, err)
		return wrapErr(err)
	}
	a.log.Info("Agent stopped")
	return nil
}

// run is the agent proper: attestation, then renewal, sync and the
// Workload API. It returns nil when ctx ends.
func (a *Agent) run(ctx context.Context) error {
	if err := a.client.Init(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	syncer, err := sync.NewSyncer(sync.SyncerConfig{
		Client:          a.client,
		Cache:           a.cache,
		Logger:          a.log.With(telemetry.SubsystemName, "sync"),
		Rand:            a.cfg.Rand,
		PollInterval:    a.cfg.PollInterval,
		SyncInterval:    a.cfg.SyncInterval,
		WorkloadKeyType: a.cfg.WorkloadKeyType,
	})
	if err != nil {
		return err
	}
	a.log.Info("Starting agent", telemetry.SPIFFEID, a.client.ID().String(), telemetry.Address, a.cfg.ServerAddress)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.client.Run(ctx) })
	g.Go(func() error { return syncer.Run(ctx) })
	g.Go(func() error { return a.workload.Run(ctx) })
	g.Go(func() error {
		select {
		case <-syncer.Synced():
			close(a.synced)
		case <-ctx.Done():
		}
		return nil
	})
	return g.Wait()
}

// Ready is closed once the Workload API accepts connections (after the
// node is attested or the stored SVID loaded).
func (a *Agent) Ready() <-chan struct{} { return a.workload.Ready() }

// Synced is closed after the first successful sync with the server.
func (a *Agent) Synced() <-chan struct{} { return a.synced }

// ID returns the agent's SPIFFE ID; the zero ID until Run has attested or
// loaded it.
func (a *Agent) ID() spiffeid.ID { return a.client.ID() }

func wrapErr(err error) error {
	return fmt.Errorf("agent: %w", err)
}
