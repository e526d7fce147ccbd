package flowc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	trustDomain = "neural-hive.local"
	agentAlias  = "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent"
	registryID  = "spiffe://neural-hive.local/ns/neural-hive-execution/sa/service-registry"
	workerID    = "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"
	orchID      = "spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/orchestrator-dynamic"
	submitterID = "spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/flowc-submit"
)

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

// proc is a long-running process of the test, stopped (SIGTERM) at cleanup.
type proc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	logs    *syncBuffer
	stopped chan struct{}
	exitErr error
}

func startProc(tb testing.TB, name, bin string, args ...string) *proc {
	tb.Helper()
	p := &proc{t: tb, name: name, logs: &syncBuffer{}, stopped: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.stopped)
	}()
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("%s logs:\n%s", name, p.logs.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits (10s, then SIGKILL); it returns the exit error.
func (p *proc) stop() error {
	select {
	case <-p.stopped:
		return p.exitErr
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.stopped:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.stopped
	}
	return p.exitErr
}

func (p *proc) exited() bool {
	select {
	case <-p.stopped:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it holds, failing after limit (a bound on a
// wait, not a timing assertion). It also fails when a watched process died.
func waitFor(tb testing.TB, what string, cond func() bool, watch ...*proc) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		for _, p := range watch {
			if p.exited() {
				tb.Fatalf("%s exited (%v) while waiting for %s:\n%s", p.name, p.exitErr, what, p.logs.String())
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs a binary to completion and returns stdout, stderr and the exit code.
func run(bin string, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
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

// handedOut remembers every address freePort returned: the kernel may offer a
// just-closed port again, and two listeners must not get the same one.
var (
	portsMu   sync.Mutex
	handedOut = map[string]bool{}
)

// freePort returns a free loopback "host:port" that no earlier call returned.
func freePort(tb testing.TB) string {
	tb.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut[addr] {
			handedOut[addr] = true
			return addr
		}
	}
	tb.Fatal("no fresh loopback port after 100 tries")
	return ""
}

func tempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// server is a spire-server process.
type server struct {
	*proc
	dir    string
	socket string
	addr   string
}

func newServer(tb testing.TB, td string) *server {
	tb.Helper()
	dir := tempDir(tb)
	s := &server{dir: dir, socket: filepath.Join(dir, "api.sock"), addr: freePort(tb)}
	host, port, _ := net.SplitHostPort(s.addr)
	conf := fmt.Sprintf(`server {
    bind_address = %q
    bind_port = %q
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "DEBUG"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
`, host, port, s.socket, td, filepath.Join(dir, "data"), filepath.Join(dir, "data", "datastore.sqlite3"))
	writeFile(tb, filepath.Join(dir, "server.conf"), conf)
	s.proc = startProc(tb, "spire-server "+td, filepath.Join(binDir, "spire-server"), "run", "-config", filepath.Join(dir, "server.conf"))
	waitFor(tb, "spire-server healthy", func() bool {
		out, _, code := s.cli("healthcheck")
		return code == 0 && out == "Server is healthy.\n"
	}, s.proc)
	return s
}

// cli runs a spire-server command against this server's admin socket.
func (s *server) cli(args ...string) (string, string, int) {
	return run(filepath.Join(binDir, "spire-server"), append(args, "-socketPath", s.socket)...)
}

func (s *server) mustCLI(tb testing.TB, args ...string) string {
	tb.Helper()
	out, errOut, code := s.cli(args...)
	if code != 0 {
		tb.Fatalf("spire-server %v: exit %d: %s", args, code, errOut)
	}
	return out
}

// entry creates the runbook's entry for id with the local selectors of the
// binary at path; ttl are the TTL flags (default the runbook's -ttl 3600).
func (s *server) entry(tb testing.TB, id, path string, ttl ...string) {
	tb.Helper()
	if len(ttl) == 0 {
		ttl = []string{"-ttl", "3600"}
	}
	s.mustCLI(tb, append([]string{"entry", "create", "-spiffeID", id, "-parentID", agentAlias,
		"-selector", "unix:uid:" + strconv.Itoa(os.Getuid()), "-selector", "unix:path:" + path}, ttl...)...)
}

// agent is a spire-agent process whose Workload API attests unix:path.
type agent struct {
	*proc
	dir    string
	socket string
}

func newAgent(tb testing.TB, srv *server) *agent {
	tb.Helper()
	dir := tempDir(tb)
	a := &agent{dir: dir, socket: filepath.Join(dir, "agent.sock")}
	writeFile(tb, filepath.Join(dir, "bootstrap.pem"), srv.mustCLI(tb, "bundle", "show"))
	host, port, _ := net.SplitHostPort(srv.addr)
	conf := fmt.Sprintf(`agent {
    data_dir = %q
    log_level = "DEBUG"
    server_address = %q
    server_port = %q
    socket_path = %q
    trust_bundle_path = %q
    trust_domain = %q
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
        }
    }
}
`, filepath.Join(dir, "data"), host, port, a.socket, filepath.Join(dir, "bootstrap.pem"), trustDomain)
	writeFile(tb, filepath.Join(dir, "agent.conf"), conf)
	token := tokenFrom(tb, srv.mustCLI(tb, "token", "generate", "-spiffeID", agentAlias))
	a.proc = startProc(tb, "spire-agent", filepath.Join(binDir, "spire-agent"), "run", "-config", filepath.Join(dir, "agent.conf"), "-joinToken", token)
	waitFor(tb, "spire-agent healthy", func() bool {
		out, _, code := run(filepath.Join(binDir, "spire-agent"), "healthcheck", "-socketPath", a.socket)
		return code == 0 && out == "Agent is healthy.\n"
	}, a.proc)
	return a
}

func tokenFrom(tb testing.TB, out string) string {
	tb.Helper()
	for line := range strings.Lines(out) {
		if tok, ok := strings.CutPrefix(strings.TrimSpace(line), "Token: "); ok {
			return tok
		}
	}
	tb.Fatalf("no token in %q", out)
	return ""
}

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// service is one of the three Neural Hive services as a process.
type service struct {
	*proc
	addr string // gRPC
	ops  string // /metrics, /live, /ready
}

func startService(tb testing.TB, name, bin string, a *agent, args ...string) *service {
	tb.Helper()
	s := &service{addr: freePort(tb), ops: freePort(tb)}
	args = append([]string{"-socketPath", a.socket, "-listen", s.addr, "-metricsAddr", s.ops, "-logLevel", "DEBUG"}, args...)
	s.proc = startProc(tb, name, bin, args...)
	return s
}

func (s *service) waitReady(tb testing.TB) {
	tb.Helper()
	waitFor(tb, s.name+" ready", func() bool {
		resp, err := http.Get("http://" + s.ops + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, s.proc)
}

// metrics scrapes /metrics, as the runbook's curl does.
func (s *service) metrics(tb testing.TB) string {
	tb.Helper()
	resp, err := http.Get("http://" + s.ops + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// counter sums the samples of name in the Prometheus text exposition whose
// labels include labels.
func counter(tb testing.TB, exposition, name string, labels map[string]string) float64 {
	tb.Helper()
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		m := sampleLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name {
			continue
		}
		have := map[string]string{}
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			have[lp[1]] = lp[2]
		}
		for k, v := range labels {
			if have[k] != v {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			tb.Fatalf("sample %q: %v", sc.Text(), err)
		}
		sum += v
	}
	return sum
}

// plane is the local identity plane with the three services.
type plane struct {
	serviceArgs  []string
	srv          *server
	agent        *agent
	registry     *service
	orchestrator *service
	worker       *service
}

type planeOptions struct {
	registryArgs []string
	noWorker     bool
	// demoEntry first creates the README's demo entry, selector unix:uid
	// only: it matches every process of the test, services included.
	demoEntry bool
	// ttl replaces the entries' -ttl 3600.
	ttl []string
	// serviceArgs are added to every service's flags.
	serviceArgs []string
}

const demoID = "spiffe://neural-hive.local/ns/demo/sa/demo"

// newPlane starts spire-server and spire-agent, creates the runbook's
// entries for the four binaries (unix:uid + unix:path), then the three
// services, and waits until the worker is registered.
func newPlane(tb testing.TB, opts planeOptions) *plane {
	tb.Helper()
	p := &plane{srv: newServer(tb, trustDomain)}
	p.agent = newAgent(tb, p.srv)
	if opts.demoEntry {
		p.srv.mustCLI(tb, "entry", "create", "-spiffeID", demoID, "-parentID", agentAlias,
			"-selector", "unix:uid:"+strconv.Itoa(os.Getuid()), "-ttl", "3600")
	}
	for _, e := range [][2]string{
		{registryID, "service-registry"},
		{orchID, "orchestrator-dynamic"},
		{workerID, "worker-agents"},
		{submitterID, "flowc-submit"},
	} {
		p.srv.entry(tb, e[0], filepath.Join(binDir, e[1]), opts.ttl...)
	}
	p.serviceArgs = opts.serviceArgs
	p.registry = startService(tb, "service-registry", filepath.Join(binDir, "service-registry"), p.agent,
		append(opts.registryArgs, opts.serviceArgs...)...)
	p.orchestrator = startService(tb, "orchestrator-dynamic", filepath.Join(binDir, "orchestrator-dynamic"), p.agent,
		append([]string{"-registry", p.registry.addr}, opts.serviceArgs...)...)
	p.registry.waitReady(tb)
	p.orchestrator.waitReady(tb)
	if !opts.noWorker {
		p.worker = p.startWorker(tb, filepath.Join(binDir, "worker-agents"))
		p.worker.waitReady(tb)
	}
	return p
}

// startWorker starts a worker-agents binary; one at a path without entry
// has no identity and calls the registry with the bootstrap bundle only.
func (p *plane) startWorker(tb testing.TB, bin string, args ...string) *service {
	tb.Helper()
	return startService(tb, "worker-agents "+bin, bin, p.agent,
		append(append([]string{"-registry", p.registry.addr, "-trustBundle", filepath.Join(p.agent.dir, "bootstrap.pem")}, p.serviceArgs...), args...)...)
}

// submit runs flowc-submit with args and returns stdout, stderr and the exit code.
func (p *plane) submit(args ...string) (string, string, int) {
	return run(filepath.Join(binDir, "flowc-submit"),
		append([]string{"-socketPath", p.agent.socket, "-orchestrator", p.orchestrator.addr}, args...)...)
}
