package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the Prometheus listener of the telemetry block:
//
//	telemetry { Prometheus { host = "localhost" port = 9988 } }
type Config struct {
	// Host is the address to listen on. Default "localhost", as SPIRE.
	// Any other value is logged at warn: metrics are then reachable from the
	// network.
	Host string
	// Port is the TCP port. 0 picks a free port (tests); the config package
	// requires a port in the file, as SPIRE does.
	Port int
	// Gatherer is what the listener serves, normally the registry from
	// NewRegistry. Required.
	Gatherer prometheus.Gatherer
	// Logger receives the start and stop lines. Nil: discard.
	Logger *slog.Logger
}

// Exporter serves the Prometheus text exposition of one registry over HTTP.
// Like SPIRE's Prometheus sink it answers on every path, so /metrics and /
// both work. Create it with New and run it with Run.
type Exporter struct {
	addr     string
	gatherer prometheus.Gatherer
	log      *slog.Logger

	ready    chan struct{}
	mu       sync.Mutex
	boundTo  net.Addr
	runCalls int
}

// New checks cfg and returns an Exporter that is not yet listening.
func New(cfg Config) (*Exporter, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("telemetry: no gatherer")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("telemetry: invalid port %d", cfg.Port)
	}
	host := cfg.Host
	if host == "" {
		host = "localhost"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Exporter{
		addr:     net.JoinHostPort(host, strconv.Itoa(cfg.Port)),
		gatherer: cfg.Gatherer,
		log:      log.With(SubsystemName, "telemetry"),
		ready:    make(chan struct{}),
	}, nil
}

// Handler returns the HTTP handler that Run serves, for callers that mount
// metrics on a listener of their own.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.gatherer, promhttp.HandlerOpts{
		// A failing collector must not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Run listens on host:port and serves metrics until ctx is done, then
// closes the listener and returns nil. It returns an error when the address
// cannot be bound or the server fails. Run may be called once.
func (e *Exporter) Run(ctx context.Context) error {
	e.mu.Lock()
	e.runCalls++
	calls := e.runCalls
	e.mu.Unlock()
	if calls > 1 {
		return errors.New("telemetry: Run called twice")
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", e.addr)
	if err != nil {
		return fmt.Errorf("telemetry: listen: %w", err)
	}
	e.mu.Lock()
	e.boundTo = ln.Addr()
	e.mu.Unlock()
	close(e.ready)

	if host, _, _ := net.SplitHostPort(e.addr); host != "localhost" && !isLoopback(host) {
		e.log.Warn("Prometheus exporter accepts remote connections; restrict access to its port", Address, ln.Addr().String())
	}
	e.log.Info("Starting Prometheus exporter", Address, ln.Addr().String())
	return serveUntilDone(ctx, ln, e.Handler(), e.log)
}

// Ready returns a channel closed once Run has bound its listener.
func (e *Exporter) Ready() <-chan struct{} { return e.ready }

// Addr returns the bound address once Ready is closed, nil before.
func (e *Exporter) Addr() net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.boundTo
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serveUntilDone serves h on ln until ctx ends. It owns ln.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errCh := make(chan error, 1)
	go func() { errCh <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			_ = srv.Close()
		}
		<-errCh
		log.Info("Prometheus exporter stopped")
		return nil
	case err := <-errCh:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("telemetry: serve: %w", err)
	}
}
