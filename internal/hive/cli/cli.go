// Package cli is the command line of the Neural Hive services
// (service-registry, orchestrator-dynamic, worker-agents) and of the Flow C
// client flowc-submit: flags in the Go style SPIRE uses (-socketPath), a
// text logger on stderr, the operations port (/metrics, /live, /ready), and
// the service's Run until the context ends.
//
// It owns flag parsing and process exit codes, nothing else: the services
// are in internal/hive/registry, orchestrator and worker.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/ops"
	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// DefaultSocketPath is the SPIRE agent's Workload API socket in the runbook.
const DefaultSocketPath = "/run/spire/sockets/agent.sock"

// Getenv reads an environment variable; the mains pass os.Getenv.
type Getenv func(string) string

// common are the flags every service has.
type common struct {
	socketPath  string
	metricsAddr string
	logLevel    string
	maxConnAge  time.Duration
}

func (c *common) register(fs *flag.FlagSet, getenv Getenv) {
	def := DefaultSocketPath
	if env := getenv("SPIFFE_ENDPOINT_SOCKET"); env != "" {
		def = env
	}
	fs.StringVar(&c.socketPath, "socketPath", def, "Path of the SPIRE agent's Workload API socket (default from SPIFFE_ENDPOINT_SOCKET when set)")
	fs.StringVar(&c.metricsAddr, "metricsAddr", ops.DefaultAddr, "Address of the operations port: /metrics, /live, /ready")
	fs.StringVar(&c.logLevel, "logLevel", "INFO", "Log level: DEBUG, INFO, WARN or ERROR")
	fs.DurationVar(&c.maxConnAge, "maxConnectionAge", flow.DefaultMaxConnectionAge, "Age after which client connections are recycled; keep it well under half the X509-SVID TTL")
}

// workloadAddr turns a socket path or address into a Workload API address.
func workloadAddr(path string) (string, error) {
	if strings.HasPrefix(path, "unix://") || strings.HasPrefix(path, "tcp://") {
		return path, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("socket path: %w", err)
	}
	return "unix://" + abs, nil
}

func newLogger(w io.Writer, level, name string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid -logLevel %q", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})).With(telemetry.Service, name), nil
}

// parse parses args; it returns the exit code to use when parsing ends the
// command (help: 0, bad flags: 2).
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return 2, false
	}
	return 0, true
}

// service is what runService runs.
type service struct {
	name     string
	listen   string
	newFn    func(lis net.Listener, reg prometheus.Registerer, log *slog.Logger) (runner, error)
	readyErr func(r runner) error
}

// runner is a service: Run(ctx) until ctx ends.
type runner interface {
	Run(ctx context.Context) error
}

// runService listens, builds the service, and runs it with the operations
// port until ctx ends. It returns the process exit code.
func runService(ctx context.Context, c common, s service, stderr io.Writer) int {
	log, err := newLogger(stderr, c.logLevel, s.name)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", s.name, err)
		return 2
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.listen)
	if err != nil {
		log.Error("Cannot listen", telemetry.Address, s.listen, telemetry.Error, err.Error())
		return 1
	}
	reg := telemetry.NewRegistry()
	svc, err := s.newFn(lis, reg, log)
	if err != nil {
		_ = lis.Close()
		log.Error("Invalid configuration", telemetry.Error, err.Error())
		return 1
	}
	opsSrv, err := ops.New(ops.Config{Addr: c.metricsAddr, Gatherer: reg, Logger: log, Ready: func() error { return s.readyErr(svc) }})
	if err != nil {
		_ = lis.Close()
		log.Error("Invalid configuration", telemetry.Error, err.Error())
		return 1
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	g.Go(func() error { return opsSrv.Run(gctx) })
	if err := g.Wait(); err != nil {
		log.Error("Stopped", telemetry.Error, err.Error())
		return 1
	}
	log.Info("Stopped")
	return 0
}

// readyChan turns a Ready channel into a readiness error.
func readyChan(ch <-chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	default:
		return errors.New(what)
	}
}
