package health_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/neural-hive/hive-identity/internal/health"
)

// switchable is a fake subsystem whose error the test sets.
type switchable struct {
	mu  sync.Mutex
	err error
}

func (s *switchable) set(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *switchable) check(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// syncBuffer is a log sink safe for the listener goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve runs c on loopback and returns its base URL; Run's nil result on
// cancel is checked at cleanup.
func serve(t *testing.T, c *health.Checker) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return "http://" + c.Addr().String()
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Header.Get("Content-Type")
}

// TestServerShape checks the body SPIRE 1.13 serves for a healthy server
// (outputs/http_server_health_ready.stdout in the reference captures).
func TestServerShape(t *testing.T) {
	ok := func(context.Context) error { return nil }
	c, err := health.New(health.Config{
		ListenerEnabled: true,
		BindAddress:     "127.0.0.1",
		Checks: []health.Check{
			{Name: "server", Ready: ok, ErrorKey: "get_bundle_err"},
			{Name: "catalog.datastore", Ready: ok, ErrorKey: "list_bundle_err"},
			{Name: "server.ca", Ready: ok, ErrorKey: "sign_x509_svid_err"},
			{Name: "server.ca.rotator", Ready: ok, ErrorKey: "rotation_err"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, c)
	const want = `{"catalog.datastore":{},"server":{},"server.ca":{},"server.ca.rotator":{}}` + "\n"
	for _, path := range []string{"/live", "/ready"} {
		code, body, ct := get(t, base+path)
		if code != http.StatusOK || body != want || ct != "application/json" {
			t.Errorf("GET %s = %d %q %q, want 200 %q application/json", path, code, body, ct, want)
		}
	}
	if code, body, _ := get(t, base+"/nosuch"); code != http.StatusNotFound || body != "404 page not found\n" {
		t.Errorf("GET /nosuch = %d %q, want 404 page not found", code, body)
	}
}

// TestAgentStates walks the agent through its states: starting (live, not
// ready), serving (both), Workload API down after start (neither).
func TestAgentStates(t *testing.T) {
	wl := &switchable{err: errors.New("workload api is unavailable")}
	started := &switchable{} // nil: the agent has started
	startedNow := false
	var mu sync.Mutex
	logs := &syncBuffer{}
	c, err := health.New(health.Config{
		ListenerEnabled: true,
		BindAddress:     "127.0.0.1",
		LivePath:        "/healthz/live",
		ReadyPath:       "/healthz/ready",
		Logger:          slog.New(slog.NewTextHandler(logs, nil)),
		Checks: []health.Check{{
			Name:     "agent",
			ErrorKey: "make_new_x509_err",
			Ready:    wl.check,
			// As SPIRE's agent: live while starting, then live only if the
			// Workload API serves.
			Live: func(ctx context.Context) error {
				mu.Lock()
				s := startedNow
				mu.Unlock()
				if !s {
					return started.check(ctx)
				}
				return wl.check(ctx)
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, c)
	const failing = `{"agent":{"make_new_x509_err":"workload api is unavailable"}}` + "\n"
	for _, tt := range []struct {
		name               string
		setup              func()
		liveCode, readyCod int
		liveBody, readyBod string
	}{
		{"ok/starting", func() {}, 200, 500, `{"agent":{}}` + "\n", failing},
		{"ok/serving", func() {
			wl.set(nil)
			mu.Lock()
			startedNow = true
			mu.Unlock()
		}, 200, 200, `{"agent":{}}` + "\n", `{"agent":{}}` + "\n"},
		{"fail/workload_api_down", func() { wl.set(errors.New("workload api is unavailable")) }, 500, 500, failing, failing},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			if code, body, _ := get(t, base+"/healthz/live"); code != tt.liveCode || body != tt.liveBody {
				t.Errorf("live = %d %q, want %d %q", code, body, tt.liveCode, tt.liveBody)
			}
			if code, body, _ := get(t, base+"/healthz/ready"); code != tt.readyCod || body != tt.readyBod {
				t.Errorf("ready = %d %q, want %d %q", code, body, tt.readyCod, tt.readyBod)
			}
		})
	}
	if code, _, _ := get(t, base+"/live"); code != http.StatusNotFound {
		t.Errorf("default /live answered %d with custom paths configured", code)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="Health check failed"`); n != 2 {
		t.Errorf("%d 'Health check failed' lines, want 2 (one per transition):\n%s", n, out)
	}
	if n := strings.Count(out, `msg="Health check recovered"`); n != 1 {
		t.Errorf("%d 'Health check recovered' lines, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "check=agent") {
		t.Errorf("log lacks check=agent:\n%s", out)
	}
}

func TestServerNotReady(t *testing.T) {
	ds := &switchable{err: errors.New("datastore unreachable: connection refused")}
	c, err := health.New(health.Config{
		ListenerEnabled: true,
		BindAddress:     "127.0.0.1",
		Checks: []health.Check{
			{Name: "catalog.datastore", Ready: ds.check, ErrorKey: "list_bundle_err"},
			{Name: "server.ca", Ready: func(context.Context) error { return nil }, ErrorKey: "sign_x509_svid_err"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, c)
	code, body, _ := get(t, base+"/ready")
	want := `{"catalog.datastore":{"list_bundle_err":"datastore unreachable: connection refused"},"server.ca":{}}` + "\n"
	if code != http.StatusInternalServerError || body != want {
		t.Errorf("ready = %d %q, want 500 %q", code, body, want)
	}
	ds.set(nil)
	if code, _, _ := get(t, base+"/ready"); code != http.StatusOK {
		t.Errorf("ready after recovery = %d, want 200", code)
	}
}

func TestCheckHonoursTimeoutAndPanics(t *testing.T) {
	c, err := health.New(health.Config{
		Timeout: 1, // 1ns: the context is done before the check looks
		Checks: []health.Check{
			{Name: "slow", Ready: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
			{Name: "broken", Ready: func(context.Context) error { panic("boom") }},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := c.Check(t.Context())
	if rep.Ready || rep.Live {
		t.Fatalf("report %+v, want neither live nor ready", rep)
	}
	if got := rep.ReadyDetails["slow"]["err"]; got != context.DeadlineExceeded.Error() {
		t.Errorf("slow: %q", got)
	}
	if got := rep.ReadyDetails["broken"]["err"]; got != "check panicked: boom" {
		t.Errorf("broken: %q", got)
	}
}

func TestListenerDisabled(t *testing.T) {
	c, err := health.New(health.Config{Checks: []health.Check{{Name: "agent", Ready: func(context.Context) error { return nil }}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready()
	if c.Addr() != nil {
		t.Errorf("Addr = %v with the listener disabled", c.Addr())
	}
	if !c.Check(ctx).Ready {
		t.Error("Check not ready")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestRefusals(t *testing.T) {
	ok := func(context.Context) error { return nil }
	for _, tt := range []struct {
		name string
		cfg  health.Config
		want string
	}{
		{"fail/no_checks", health.Config{}, "health: no health checks defined"},
		{"fail/no_name", health.Config{Checks: []health.Check{{Ready: ok}}}, "health: check 0 has no name"},
		{"fail/duplicate", health.Config{Checks: []health.Check{{Name: "a", Ready: ok}, {Name: "a", Ready: ok}}}, `health: check "a" has already been added`},
		{"fail/no_ready", health.Config{Checks: []health.Check{{Name: "a"}}}, `health: check "a" has no ready func`},
		{"fail/port", health.Config{BindPort: -1, Checks: []health.Check{{Name: "a", Ready: ok}}}, "health: invalid bind port -1"},
		{"fail/relative_path", health.Config{LivePath: "live", Checks: []health.Check{{Name: "a", Ready: ok}}}, `health: path "live" must start with /`},
		{"fail/same_paths", health.Config{LivePath: "/h", ReadyPath: "/h", Checks: []health.Check{{Name: "a", Ready: ok}}}, `health: live and ready paths are both "/h"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := health.New(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New: err = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("fail/port_in_use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := health.New(health.Config{
			ListenerEnabled: true, BindAddress: "127.0.0.1", BindPort: ln.Addr().(*net.TCPAddr).Port,
			Checks: []health.Check{{Name: "a", Ready: ok}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "health: listen:") {
			t.Fatalf("Run: err = %v, want health: listen: ...", err)
		}
	})
}
