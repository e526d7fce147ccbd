// Package endpoints serves the server's gRPC APIs: on the admin unix socket
// (local callers, every admin RPC) and on the TCP endpoint (agents and admin
// workloads over mTLS). It owns the listeners, the gRPC servers, the
// interceptors that authenticate and authorize every call (package authz),
// attach the request logger and turn stray errors and panics into Internal,
// and the gRPC health service. It owns no API logic: the services come in
// through Config.
package endpoints

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/neural-hive/hive-identity/internal/server/authz"
)

// maxConnectionAge bounds the life of a TCP connection (SPIRE: 3 minutes).
const maxConnectionAge = 3 * time.Minute

// Service is a gRPC service that registers itself on a server.
type Service interface {
	Register(r grpc.ServiceRegistrar)
}

// TCPConfig is the TCP endpoint agents and remote admins use.
type TCPConfig struct {
	Addr *net.TCPAddr
	// TLS authenticates the server with its own SVID and verifies client
	// SVIDs against the current bundle. It must set SessionTicketsDisabled
	// so that every connection is verified again (SPIRE 1.14.3, T10).
	TLS *tls.Config
}

// Config configures the endpoints.
type Config struct {
	// SocketPath is the admin unix socket.
	SocketPath string
	// TCP, when set, also serves on TCP with mTLS.
	TCP *TCPConfig
	// Services are registered on every listener; authorization decides who
	// may call what.
	Services []Service
	// LocalServices are registered on the admin socket only, like the
	// health service (T13: debug-style services never appear on TCP).
	LocalServices []Service
	// Facts are the lookups authorization needs for TCP callers.
	Facts authz.Facts
	// Health reports whether the server can serve (nil: always).
	Health func(ctx context.Context) error
	// UnaryInterceptors and StreamInterceptors run first on every listener,
	// before authentication, so they see every call with its final code,
	// refusals included (telemetry.ServerMetrics counts calls here).
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
	// DisableRateLimits turns off the per-IP limits of attestation and
	// signing on TCP (on by default, as in SPIRE).
	DisableRateLimits bool
	// ShutdownTimeout bounds the graceful stop (default 5s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Endpoints serves the APIs. Create it with New and serve with Run.
type Endpoints struct {
	c        Config
	log      *slog.Logger
	facts    authz.Facts
	ready    chan struct{}
	stopping context.Context
	stop     context.CancelFunc
	tcpAddr  chan net.Addr
	limits   *limits
}

// New checks c and returns Endpoints that are not serving yet.
func New(c Config) (*Endpoints, error) {
	if c.SocketPath == "" {
		return nil, errors.New("endpoints: admin socket path is required")
	}
	if c.TCP != nil {
		switch {
		case c.TCP.Addr == nil:
			return nil, errors.New("endpoints: TCP address is required")
		case c.TCP.TLS == nil:
			return nil, errors.New("endpoints: TLS configuration is required on TCP")
		case !c.TCP.TLS.SessionTicketsDisabled:
			return nil, errors.New("endpoints: TLS session tickets must be disabled on TCP")
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	stopping, stop := context.WithCancel(context.Background())
	var l *limits
	if !c.DisableRateLimits {
		l = newLimits()
	}
	return &Endpoints{
		limits: l,
		c:      c, log: c.Logger, facts: c.Facts,
		ready: make(chan struct{}), stopping: stopping, stop: stop,
		tcpAddr: make(chan net.Addr, 1),
	}, nil
}

// Ready is closed once every listener accepts connections.
func (e *Endpoints) Ready() <-chan struct{} { return e.ready }

// TCPAddr returns the bound TCP address once Ready is closed (useful with
// port 0), and nil when there is no TCP endpoint.
func (e *Endpoints) TCPAddr() net.Addr {
	select {
	case a := <-e.tcpAddr:
		e.tcpAddr <- a
		return a
	default:
		return nil
	}
}

func (e *Endpoints) newServer(local bool, opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.ChainUnaryInterceptor(append(slices.Clone(e.c.UnaryInterceptors), e.unaryInterceptor)...),
		grpc.ChainStreamInterceptor(append(slices.Clone(e.c.StreamInterceptors), e.streamInterceptor)...),
	)
	s := grpc.NewServer(opts...)
	for _, svc := range e.c.Services {
		svc.Register(s)
	}
	if local {
		for _, svc := range e.c.LocalServices {
			svc.Register(s)
		}
		grpc_health_v1.RegisterHealthServer(s, &health{check: e.c.Health})
	}
	return s
}

// Run serves until ctx is canceled, then stops gracefully (streams are
// canceled; after ShutdownTimeout, connections are closed) and removes the
// admin socket. It returns nil on cancellation and an error if a listener
// cannot be opened or fails. Run may be called once.
func (e *Endpoints) Run(ctx context.Context) error {
	defer e.stop()
	unixL, err := listenUnix(e.c.SocketPath, e.log)
	if err != nil {
		return err
	}
	servers := []*grpc.Server{e.newServer(true)}
	listeners := []net.Listener{unixL}
	if e.c.TCP != nil {
		tcpL, err := net.ListenTCP("tcp", e.c.TCP.Addr)
		if err != nil {
			_ = unixL.Close()
			return fmt.Errorf("endpoints: listen on TCP: %w", err)
		}
		e.tcpAddr <- tcpL.Addr()
		listeners = append(listeners, tcpL)
		servers = append(servers, e.newServer(false,
			grpc.Creds(credentials.NewTLS(e.c.TCP.TLS)),
			// Bounded connection lifetime, as SPIRE: clients reconnect, so
			// their certificates are verified again against the bundle.
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: maxConnectionAge}),
		))
	}

	g, gctx := errgroup.WithContext(ctx)
	for i, s := range servers {
		l := listeners[i]
		g.Go(func() error {
			if err := s.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("endpoints: serve %s: %w", l.Addr(), err)
			}
			return nil
		})
	}
	e.log.Info("Starting Server APIs", slog.String("socket_path", e.c.SocketPath))
	if e.c.TCP != nil {
		e.log.Info("Starting Server APIs", slog.String("address", listeners[1].Addr().String()))
	}
	close(e.ready)

	g.Go(func() error {
		<-gctx.Done()
		e.stop()
		for _, s := range servers {
			gracefulStop(s, e.c.ShutdownTimeout)
		}
		return nil
	})
	err = g.Wait()
	if ctx.Err() != nil && err == nil {
		e.log.Info("Server APIs stopped")
	}
	return err
}

// gracefulStop stops s, waiting for running calls up to timeout.
func gracefulStop(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	t := time.AfterFunc(timeout, s.Stop)
	defer t.Stop()
	go func() {
		s.GracefulStop()
		close(done)
	}()
	<-done
}
