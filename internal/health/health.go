// Package health serves the health_checks block of server.conf and
// agent.conf: an HTTP listener answering live_path (default /live) and
// ready_path (default /ready) with 200 or 500 and a JSON body shaped like
// SPIRE's, one object per checked subsystem:
//
//	{"catalog.datastore":{},"server":{},"server.ca":{}}
//	{"agent":{"make_new_x509_err":"workload api is unavailable"}}
//
// What is healthy is decided by the process, which passes one Check per
// subsystem (server: the datastore answers, the CA has an active authority;
// agent: it holds a valid SVID and its Workload API serves). Checks run when
// a probe asks, with a timeout, so the answer is never older than the probe.
// The package owns no opinion on subsystems and no gRPC health service (the
// endpoints own that; the healthcheck commands may call Checker.Check).
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// Check is the health of one subsystem.
type Check struct {
	// Name is the subsystem's key in the JSON body ("server", "agent",
	// "catalog.datastore", "server.ca"). Required and unique.
	Name string
	// Ready returns nil when the subsystem can do its job. Required. It
	// must return when its context ends.
	Ready func(context.Context) error
	// Live returns nil when the subsystem is alive or can recover without
	// a restart. Nil: the same as Ready, as SPIRE's server subsystems.
	Live func(context.Context) error
	// ErrorKey is the JSON key under which a failure is reported, as SPIRE
	// names it per subsystem ("list_bundle_err", "get_bundle_err",
	// "sign_x509_svid_err", "make_new_x509_err"). Default "err".
	ErrorKey string
}

// Config configures a Checker from the health_checks block.
type Config struct {
	// ListenerEnabled starts the HTTP listener in Run. False: Run only
	// waits for its context, and Check still answers.
	ListenerEnabled bool
	// BindAddress is the host to listen on. Default "localhost", as SPIRE.
	BindAddress string
	// BindPort is the TCP port. 0 picks a free port (tests); the config
	// package fills SPIRE's default of 80.
	BindPort int
	// LivePath and ReadyPath default to "/live" and "/ready".
	LivePath  string
	ReadyPath string
	// Checks are the subsystems to check. At least one.
	Checks []Check
	// Timeout bounds one run of all checks. Default 10s.
	Timeout time.Duration
	// Logger receives the listener's lines and each check's transitions
	// (failed at warn, recovered at info). Nil: discard.
	Logger *slog.Logger
}

// Report is the result of one run of the checks. The Details maps are the
// JSON bodies of the live and ready paths: subsystem name to an object that
// is empty when the subsystem is fine and holds its error otherwise.
type Report struct {
	Live         bool
	Ready        bool
	LiveDetails  map[string]map[string]string
	ReadyDetails map[string]map[string]string
}

// Checker runs the checks and serves them over HTTP. Create it with New;
// Run serves until its context ends. Check and Handler are safe for
// concurrent use.
type Checker struct {
	cfg Config
	log *slog.Logger

	ready chan struct{}

	mu      sync.Mutex
	boundTo net.Addr
	running bool
	failing map[string]string // check name -> error of the last failing run
}

// New checks cfg, fills its defaults and returns a Checker that is not yet
// listening.
func New(cfg Config) (*Checker, error) {
	if len(cfg.Checks) == 0 {
		return nil, errors.New("health: no health checks defined")
	}
	seen := make(map[string]bool)
	for i, c := range cfg.Checks {
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("health: check %d has no name", i)
		case seen[c.Name]:
			return nil, fmt.Errorf("health: check %q has already been added", c.Name)
		case c.Ready == nil:
			return nil, fmt.Errorf("health: check %q has no ready func", c.Name)
		}
		seen[c.Name] = true
		if cfg.Checks[i].ErrorKey == "" {
			cfg.Checks[i].ErrorKey = "err"
		}
	}
	if cfg.BindPort < 0 || cfg.BindPort > 65535 {
		return nil, fmt.Errorf("health: invalid bind port %d", cfg.BindPort)
	}
	if cfg.BindAddress == "" {
		cfg.BindAddress = "localhost"
	}
	cfg.BindAddress = strings.Trim(cfg.BindAddress, "[]")
	if cfg.LivePath == "" {
		cfg.LivePath = "/live"
	}
	if cfg.ReadyPath == "" {
		cfg.ReadyPath = "/ready"
	}
	for _, p := range []string{cfg.LivePath, cfg.ReadyPath} {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("health: path %q must start with /", p)
		}
	}
	if cfg.LivePath == cfg.ReadyPath {
		return nil, fmt.Errorf("health: live and ready paths are both %q", cfg.LivePath)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Checks = append([]Check(nil), cfg.Checks...)
	return &Checker{
		cfg:     cfg,
		log:     log.With(telemetry.SubsystemName, "health"),
		ready:   make(chan struct{}),
		failing: make(map[string]string),
	}, nil
}

// Check runs every check once, concurrently, within the configured timeout
// (and ctx), and returns the combined report: live (ready) only if every
// subsystem is live (ready). It logs a check that starts failing at warn
// and one that recovers at info, once per transition.
func (c *Checker) Check(ctx context.Context) Report {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	type result struct{ live, ready error }
	results := make([]result, len(c.cfg.Checks))
	var wg sync.WaitGroup
	for i, chk := range c.cfg.Checks {
		wg.Go(func() {
			r := result{ready: runCheck(ctx, chk.Ready)}
			if chk.Live == nil {
				r.live = r.ready
			} else {
				r.live = runCheck(ctx, chk.Live)
			}
			results[i] = r
		})
	}
	wg.Wait()

	rep := Report{
		Live:         true,
		Ready:        true,
		LiveDetails:  make(map[string]map[string]string, len(results)),
		ReadyDetails: make(map[string]map[string]string, len(results)),
	}
	for i, chk := range c.cfg.Checks {
		r := results[i]
		rep.LiveDetails[chk.Name] = details(chk.ErrorKey, r.live)
		rep.ReadyDetails[chk.Name] = details(chk.ErrorKey, r.ready)
		if r.live != nil {
			rep.Live = false
		}
		if r.ready != nil {
			rep.Ready = false
		}
		c.logTransition(chk.Name, errors.Join(r.ready, r.live))
	}
	return rep
}

// runCheck calls fn and turns a panic into an error, so a broken check
// reports unhealthy instead of killing the process.
func runCheck(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check panicked: %v", r)
		}
	}()
	return fn(ctx)
}

func details(key string, err error) map[string]string {
	if err == nil {
		return map[string]string{}
	}
	return map[string]string{key: err.Error()}
}

func (c *Checker) logTransition(name string, err error) {
	c.mu.Lock()
	prev, wasFailing := c.failing[name]
	if err != nil {
		c.failing[name] = err.Error()
	} else {
		delete(c.failing, name)
	}
	c.mu.Unlock()
	switch {
	case err != nil && !wasFailing:
		c.log.Warn("Health check failed", telemetry.Check, name, telemetry.Error, err.Error())
	case err == nil && wasFailing:
		c.log.Info("Health check recovered", telemetry.Check, name, telemetry.Error, prev)
	}
}

// Handler returns the HTTP handler of the live and ready paths; any other
// path answers 404.
func (c *Checker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(c.cfg.LivePath, func(w http.ResponseWriter, r *http.Request) {
		rep := c.Check(r.Context())
		writeJSON(w, rep.Live, rep.LiveDetails)
	})
	mux.HandleFunc(c.cfg.ReadyPath, func(w http.ResponseWriter, r *http.Request) {
		rep := c.Check(r.Context())
		writeJSON(w, rep.Ready, rep.ReadyDetails)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, ok bool, body map[string]map[string]string) {
	code := http.StatusOK
	if !ok {
		code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// Run serves the live and ready paths on bind_address:bind_port until ctx
// is done, then closes the listener and returns nil. With the listener
// disabled it only waits for ctx. It returns an error when the address
// cannot be bound. Run may be called once.
func (c *Checker) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("health: Run called twice")
	}
	c.running = true
	c.mu.Unlock()

	if !c.cfg.ListenerEnabled {
		close(c.ready)
		<-ctx.Done()
		return nil
	}
	addr := net.JoinHostPort(c.cfg.BindAddress, strconv.Itoa(c.cfg.BindPort))
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("health: listen: %w", err)
	}
	c.mu.Lock()
	c.boundTo = ln.Addr()
	c.mu.Unlock()
	close(c.ready)
	c.log.Info("Serving health checks", telemetry.Address, ln.Addr().String())

	srv := &http.Server{
		Handler:           c.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
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
		return nil
	case err := <-errCh:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("health: serve: %w", err)
	}
}

// Ready returns a channel closed once Run has bound its listener (or, with
// the listener disabled, once Run has started).
func (c *Checker) Ready() <-chan struct{} { return c.ready }

// Addr returns the bound address once Ready is closed; nil before, and nil
// when the listener is disabled.
func (c *Checker) Addr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boundTo
}
