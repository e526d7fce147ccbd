package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// Defaults of Config.
const (
	// DefaultSocketMode makes the socket connectable by every local user,
	// as SPIRE does: callers are told apart by attestation, not by file
	// permissions.
	DefaultSocketMode fs.FileMode = 0o777
	// DefaultDirMode is the mode of a socket directory the server creates.
	DefaultDirMode fs.FileMode = 0o755
)

// Cache is the part of the agent's cache the Workload API reads
// (*cache.Cache).
type Cache interface {
	Subscribe(selectors []string) *cache.Subscription
	Snapshot(selectors []string) *cache.Update
	MatchingEntries(selectors []string) []*cache.Entry
	FetchJWTSVID(ctx context.Context, entry *cache.Entry, audience []string) (*cache.JWTSVID, error)
}

// Metrics counts what the Workload API sees (*telemetry.AgentMetrics).
type Metrics interface {
	// WorkloadAttestationFailed counts a caller refused for lack of an
	// identity or because it could not be attested; reason is a
	// telemetry Reason constant.
	WorkloadAttestationFailed(attestor, reason string)
	// WorkloadAPIConnOpened and WorkloadAPIConnClosed count the
	// connections accepted on the socket, each closed once.
	WorkloadAPIConnOpened()
	WorkloadAPIConnClosed()
	// WorkloadAPICall counts an HTTP/1.1 call by method and gRPC code name.
	WorkloadAPICall(method, code string)
}

type noMetrics struct{}

func (noMetrics) WorkloadAttestationFailed(string, string) {}
func (noMetrics) WorkloadAPIConnOpened()                   {}
func (noMetrics) WorkloadAPIConnClosed()                   {}
func (noMetrics) WorkloadAPICall(string, string)           {}

// Attestor returns the selectors of a process (the workload attestors,
// e.g. *workloadattest.Unix, or several of them combined).
type Attestor interface {
	Attest(ctx context.Context, pid int32) ([]string, error)
}

var (
	_ Cache    = (*cache.Cache)(nil)
	_ Attestor = AttestorFunc(nil)
)

// AttestorFunc adapts a function to Attestor.
type AttestorFunc func(ctx context.Context, pid int32) ([]string, error)

// Attest calls f.
func (f AttestorFunc) Attest(ctx context.Context, pid int32) ([]string, error) { return f(ctx, pid) }

// Config configures the Workload API server.
type Config struct {
	// SocketPath is the unix socket to serve on (agent socket_path).
	// Required. A stale socket at the path is replaced; any other file is an
	// error.
	SocketPath string
	// SocketMode is applied to the socket. Zero means DefaultSocketMode.
	SocketMode fs.FileMode
	// DirMode is the mode of the socket's directory. When zero, a missing
	// directory is created with DefaultDirMode and an existing one is left
	// alone; when set, it is also applied to an existing directory.
	DirMode fs.FileMode
	// TrustDomain is the agent's trust domain: JWT-SVIDs of other trust
	// domains have their claims reduced to sub, aud, exp and
	// AllowedForeignJWTClaims on validation. Required.
	TrustDomain spiffeid.TrustDomain
	// AllowedForeignJWTClaims are the extra claims returned for JWT-SVIDs
	// of other trust domains (agent allowed_foreign_jwt_claims).
	AllowedForeignJWTClaims []string
	// Cache supplies identities and bundles. Required.
	Cache Cache
	// Attestor attests callers by PID. Required.
	Attestor Attestor
	// ProcDir is the proc file system used for PID-reuse checks; empty
	// means "/proc".
	ProcDir string
	// Clock is the time used to validate JWT-SVIDs. Nil: time.Now.
	Clock func() time.Time
	// AttestorName labels workload attestation failures in Metrics ("unix").
	// Empty: telemetry.Other.
	AttestorName string
	// Metrics counts connections, refused callers and HTTP/1.1 calls
	// (*telemetry.AgentMetrics satisfies it). Nil: none.
	Metrics Metrics
	// UnaryInterceptors and StreamInterceptors run first on every gRPC call,
	// before the security header check, so they see every call with its
	// final code (telemetry.AgentMetrics counts calls there).
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
	// Health reports whether the agent can serve workloads; the gRPC health
	// service (`spire-agent healthcheck`) answers SERVING when it returns
	// nil. Nil: SERVING once the cache holds the trust domain's bundle.
	Health func(ctx context.Context) error
	// Logger receives the server's logs. Nil: discarded.
	Logger *slog.Logger
}

// Server serves the SPIFFE Workload API (gRPC) and, on the same socket, the
// HTTP/1.1 JSON endpoint GET /v1/spiffe/workload/x509svid.
type Server struct {
	cfg      Config
	log      *slog.Logger
	foreign  map[string]struct{}
	ready    chan struct{}
	runOnce  sync.Once
	workload *workloadService
}

// New checks cfg, fills defaults and returns a Server; nothing is opened
// until Run.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.SocketPath == "":
		return nil, wrapErr(errors.New("socket path is required"))
	case cfg.TrustDomain.IsZero():
		return nil, wrapErr(errors.New("trust domain is required"))
	case cfg.Cache == nil:
		return nil, wrapErr(errors.New("cache is required"))
	case cfg.Attestor == nil:
		return nil, wrapErr(errors.New("attestor is required"))
	}
	if cfg.SocketMode == 0 {
		cfg.SocketMode = DefaultSocketMode
	}
	if cfg.ProcDir == "" {
		cfg.ProcDir = "/proc"
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.AttestorName == "" {
		cfg.AttestorName = telemetry.Other
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		foreign: make(map[string]struct{}),
		ready:   make(chan struct{}),
	}
	for _, c := range cfg.AllowedForeignJWTClaims {
		s.foreign[c] = struct{}{}
	}
	s.workload = &workloadService{s: s}
	return s, nil
}

// Ready is closed once the socket accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the socket path.
func (s *Server) Addr() string { return s.cfg.SocketPath }

// Run serves until ctx is done, then closes every connection, waits for the
// handlers and removes the socket. It returns nil on cancellation. A Server
// runs once.
func (s *Server) Run(ctx context.Context) error {
	first := false
	s.runOnce.Do(func() { first = true })
	if !first {
		return wrapErr(errors.New("server already ran"))
	}
	l, err := s.listen()
	if err != nil {
		return err
	}
	m := newMux(l, s.cfg.ProcDir, s.log, s.cfg.Metrics)

	gs := grpc.NewServer(
		grpc.Creds(peerCreds{}),
		grpc.ChainUnaryInterceptor(append(slices.Clone(s.cfg.UnaryInterceptors), s.unaryInterceptor)...),
		grpc.ChainStreamInterceptor(append(slices.Clone(s.cfg.StreamInterceptors), s.streamInterceptor)...),
		grpc.WaitForHandlers(true),
	)
	workload.RegisterSpiffeWorkloadAPIServer(gs, s.workload)
	grpc_health_v1.RegisterHealthServer(gs, &healthService{cache: s.cfg.Cache, check: s.cfg.Health})
	reflection.Register(gs)

	hs := &http.Server{
		Handler:           s.httpHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*peerConn); ok {
				return context.WithValue(ctx, peerKey{}, peerInfo{caller: pc.caller, watcher: pc.watcher})
			}
			return ctx
		},
	}

	s.log.Info("Starting Workload API", "path", s.cfg.SocketPath)
	close(s.ready)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(m.serve)
	g.Go(func() error {
		if err := gs.Serve(m.grpc); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return wrapErr(fmt.Errorf("serve gRPC: %w", err))
		}
		return nil
	})
	g.Go(func() error {
		if err := hs.Serve(m.http); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return wrapErr(fmt.Errorf("serve HTTP: %w", err))
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		m.Close() // stops accepting; removes the socket
		gs.Stop() // closes connections, cancels streams, waits for handlers
		hs.Close()
		return nil
	})
	err = g.Wait()
	s.log.Info("Stopped Workload API", "path", s.cfg.SocketPath)
	return err
}

// listen creates the socket directory if needed, replaces a stale socket,
// listens and applies the socket mode.
func (s *Server) listen() (*net.UnixListener, error) {
	path := s.cfg.SocketPath
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		mode := s.cfg.DirMode
		if mode == 0 {
			mode = DefaultDirMode
		}
		if err := os.MkdirAll(dir, mode); err != nil {
			return nil, wrapErr(fmt.Errorf("create socket directory: %w", err))
		}
	}
	if s.cfg.DirMode != 0 {
		if err := os.Chmod(dir, s.cfg.DirMode); err != nil {
			return nil, wrapErr(fmt.Errorf("set socket directory mode: %w", err))
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, wrapErr(fmt.Errorf("%s exists and is not a socket", path))
		}
		if err := os.Remove(path); err != nil {
			return nil, wrapErr(fmt.Errorf("remove stale socket: %w", err))
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, wrapErr(fmt.Errorf("listen: %w", err))
	}
	if err := os.Chmod(path, s.cfg.SocketMode); err != nil {
		l.Close()
		return nil, wrapErr(fmt.Errorf("set socket mode: %w", err))
	}
	return l, nil
}

func wrapErr(err error) error {
	return fmt.Errorf("workloadapi: %w", err)
}
