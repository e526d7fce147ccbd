// Package integration runs the real spire-server and spire-agent binaries as
// processes and drives them with their own CLIs, as an operator would.
package integration

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// binDir holds the binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hid-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, name := range []string{"spire-server", "spire-agent"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// server is a spire-server process with its own data dir, config and admin socket.
type server struct {
	t       testing.TB
	dir     string
	conf    string
	socket  string
	port    int
	cmd     *exec.Cmd
	logs    *syncBuffer
	stopped chan struct{}
	// healthPort and metricsPort are the health_checks and Prometheus
	// listeners (127.0.0.1), 0 unless serverOptions.telemetry.
	healthPort, metricsPort int
}

// serverOptions shape the generated server.conf.
type serverOptions struct {
	dbType string // "sqlite3" (default) or "postgres"
	dsn    string
	extra  string // appended inside the server block
	// plugins is appended inside the plugins block (an UpstreamAuthority).
	plugins string
	// telemetry adds the health_checks and telemetry blocks, on free
	// loopback ports.
	telemetry bool
}

func newServer(tb testing.TB, opts serverOptions) *server {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if opts.dbType == "" {
		opts.dbType = "sqlite3"
		opts.dsn = filepath.Join(dir, "data", "datastore.sqlite3")
	}
	s := &server{t: tb, dir: dir, conf: filepath.Join(dir, "server.conf"), socket: filepath.Join(dir, "s", "api.sock"), port: freePort(tb)}
	var blocks string
	if opts.telemetry {
		s.healthPort, s.metricsPort = freePort(tb), freePort(tb)
		blocks = telemetryBlocks(s.healthPort, s.metricsPort)
	}
	conf := fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = "neural-hive.local"
    data_dir = %q
    log_level = "DEBUG"
%s
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = %q
            connection_string = %q
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = %q
        }
    }
%s
}
%s`, s.port, s.socket, filepath.Join(dir, "data"), opts.extra, opts.dbType, opts.dsn, filepath.Join(dir, "data", "keys.json"), opts.plugins, blocks)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

// telemetryBlocks are the health_checks and telemetry blocks of a
// configuration, on 127.0.0.1.
func telemetryBlocks(healthPort, metricsPort int) string {
	return fmt.Sprintf(`
health_checks {
    listener_enabled = true
    bind_address = "127.0.0.1"
    bind_port = "%d"
    live_path = "/live"
    ready_path = "/ready"
}

telemetry {
    Prometheus {
        host = "127.0.0.1"
        port = %d
    }
}
`, healthPort, metricsPort)
}

func (s *server) start() {
	s.t.Helper()
	s.logs = &syncBuffer{}
	s.cmd = exec.Command(filepath.Join(binDir, "spire-server"), "run", "-config", s.conf)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.stopped = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.stopped)
	s.waitHealthy()
}

// waitHealthy polls the CLI healthcheck until it passes (bounded), failing the test otherwise.
func (s *server) waitHealthy() {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, code := s.cli("healthcheck")
		if code == 0 && out == "Server is healthy.\n" {
			return
		}
		select {
		case <-s.stopped:
			s.t.Fatalf("spire-server exited before becoming healthy:\n%s", s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("spire-server not healthy after 20s:\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; kill sends SIGKILL (a crash).
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.stopped:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.stopped:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.stopped
	}
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.stopped
}

// cli runs spire-server with args and -socketPath appended; it returns stdout, stderr and the exit code.
func (s *server) cli(args ...string) (string, string, int) {
	return s.cliIn("", args...)
}

func (s *server) cliIn(stdin string, args ...string) (string, string, int) {
	args = append(args, "-socketPath", s.socket)
	return run(stdin, filepath.Join(binDir, "spire-server"), args...)
}

func run(stdin, bin string, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return stdout.String(), stderr.String(), code
}

// postgresDSN creates a database of its own for the test and drops it afterwards.
func postgresDSN(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("HIVE_TEST_POSTGRES_DSN")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	defer db.Close()
	name := fmt.Sprintf("hid_it_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		tb.Fatalf("PostgreSQL is required for this test (set HIVE_TEST_POSTGRES_DSN): %v", err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
