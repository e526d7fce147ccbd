package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentProc is a spire-agent process with its own data dir and Workload API socket.
type agentProc struct {
	t       testing.TB
	dir     string
	conf    string
	socket  string
	cmd     *exec.Cmd
	logs    *syncBuffer
	stopped chan struct{}
	exitErr error
	// healthPort and metricsPort are the health_checks and Prometheus
	// listeners (127.0.0.1), 0 unless agentOptions.telemetry.
	healthPort, metricsPort int
}

// syncBuffer is a bytes.Buffer safe for a process writer and a test reader.
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

// newAgent writes agent.conf for srv (bootstrap bundle from `bundle show`) and
// starts the agent with joinToken ("" to rely on a stored SVID).
func newAgent(tb testing.TB, srv *server, joinToken string) *agentProc {
	tb.Helper()
	a := prepareAgent(tb, srv)
	a.start(joinToken)
	return a
}

// agentOptions shape the generated agent.conf.
type agentOptions struct {
	// telemetry adds the health_checks and telemetry blocks, on free
	// loopback ports.
	telemetry bool
}

// newAgentWith is newAgent with options.
func newAgentWith(tb testing.TB, srv *server, joinToken string, opts agentOptions) *agentProc {
	tb.Helper()
	a := prepareAgentWith(tb, srv, opts)
	a.start(joinToken)
	return a
}

// prepareAgent writes the agent's directory and config without starting it.
func prepareAgent(tb testing.TB, srv *server) *agentProc {
	tb.Helper()
	return prepareAgentWith(tb, srv, agentOptions{})
}

// prepareAgentWith is prepareAgent with options.
func prepareAgentWith(tb testing.TB, srv *server, opts agentOptions) *agentProc {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	bundle, _, code := srv.cli("bundle", "show")
	if code != 0 {
		tb.Fatal("bundle show failed")
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap.pem"), []byte(bundle), 0o600); err != nil {
		tb.Fatal(err)
	}
	a := &agentProc{t: tb, dir: dir, conf: filepath.Join(dir, "agent.conf"), socket: filepath.Join(dir, "sock", "agent.sock")}
	var blocks string
	if opts.telemetry {
		a.healthPort, a.metricsPort = freePort(tb), freePort(tb)
		blocks = telemetryBlocks(a.healthPort, a.metricsPort)
	}
	conf := fmt.Sprintf(`agent {
    data_dir = %q
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_bundle_path = %q
    trust_domain = "neural-hive.local"
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = %q
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
%s`, filepath.Join(dir, "data"), srv.port, a.socket, filepath.Join(dir, "bootstrap.pem"), filepath.Join(dir, "data"), blocks)
	if err := os.WriteFile(a.conf, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.stop)
	return a
}

// start runs the agent and waits until its healthcheck passes.
func (a *agentProc) start(joinToken string) {
	a.t.Helper()
	a.startNoWait(joinToken)
	a.waitHealthy()
}

func (a *agentProc) startNoWait(joinToken string) {
	a.t.Helper()
	args := []string{"run", "-config", a.conf}
	if joinToken != "" {
		args = append(args, "-joinToken", joinToken)
	}
	a.logs = &syncBuffer{}
	a.cmd = exec.Command(filepath.Join(binDir, "spire-agent"), args...)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.stopped = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		a.exitErr = cmd.Wait()
		close(done)
	}(a.cmd, a.stopped)
}

func (a *agentProc) waitHealthy() {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _, code := a.cli("healthcheck")
		if code == 0 && out == "Agent is healthy.\n" {
			return
		}
		select {
		case <-a.stopped:
			a.t.Fatalf("spire-agent exited before becoming healthy (%v):\n%s", a.exitErr, a.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("spire-agent not healthy after 30s:\n%s", a.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits (bounded) for the agent to exit by itself.
func (a *agentProc) waitExit(limit time.Duration) bool {
	select {
	case <-a.stopped:
		return true
	case <-time.After(limit):
		return false
	}
}

func (a *agentProc) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.stopped:
		return
	default:
	}
	_ = a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.stopped:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.stopped
	}
}

// cli runs spire-agent with args and -socketPath appended.
func (a *agentProc) cli(args ...string) (string, string, int) {
	args = append(args, "-socketPath", a.socket)
	return run("", filepath.Join(binDir, "spire-agent"), args...)
}

// token mints a join token whose agent becomes a node alias of aliasID.
func (s *server) token(aliasID string) string {
	s.t.Helper()
	args := []string{"token", "generate"}
	if aliasID != "" {
		args = append(args, "-spiffeID", aliasID)
	}
	out, errOut, code := s.cli(args...)
	if code != 0 {
		s.t.Fatalf("token generate: %s", errOut)
	}
	line := strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
	tok, ok := strings.CutPrefix(line, "Token: ")
	if !ok {
		s.t.Fatalf("token generate output %q", out)
	}
	return tok
}

// createEntry runs `entry create` and returns the entry ID.
func (s *server) createEntry(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.cli(append([]string{"entry", "create"}, args...)...)
	if code != 0 {
		s.t.Fatalf("entry create %v: %s", args, errOut)
	}
	m := entryIDLine.FindStringSubmatch(out)
	if m == nil {
		s.t.Fatalf("no entry ID in %q", out)
	}
	return m[1]
}
