// Package ops serves the operations port of a Neural Hive service, the port
// the runbook port-forwards (9090): /metrics in the Prometheus text format
// and the /live and /ready probes.
//
// It does not create the metrics it serves (the services and
// pkg/spiffegrpc register theirs on the registry passed in) and does not
// decide readiness (the service passes a func).
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is the operations address of every service, as in the
// runbook's `kubectl port-forward ... 9090:9090`.
const DefaultAddr = ":9090"

// Config configures a Server.
type Config struct {
	// Addr is host:port to listen on. Default DefaultAddr.
	Addr string
	// Gatherer is what /metrics serves. Required.
	Gatherer prometheus.Gatherer
	// Ready reports whether the service is ready: nil when it is, the
	// reason otherwise. Nil means always ready.
	Ready func() error
	// Logger receives the listener's lines. Nil: discard.
	Logger *slog.Logger
}

// Server is the HTTP listener of the operations port.
type Server struct {
	cfg   Config
	ready chan struct{}
	addr  net.Addr
}

// New checks cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("ops: no gatherer")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, ready: make(chan struct{})}, nil
}

// Handler returns the handler of /metrics, /live and /ready.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "live"})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.cfg.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Ready returns a channel closed once Run has bound its listener.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound address once Ready is closed, nil before.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.addr
	default:
		return nil
	}
}

// Run serves until ctx is done, then shuts the listener down and returns
// nil. It returns an error when the address cannot be bound. Run may be
// called once.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ops: listen: %w", err)
	}
	s.addr = lis.Addr()
	close(s.ready)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.cfg.Logger.Info("Serving metrics and health", telemetry.Address, lis.Addr().String())
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	})
	err = srv.Serve(lis)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("ops: serve: %w", err)
}
