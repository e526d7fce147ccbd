package agent_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/neural-hive/hive-identity/internal/agent"
	"github.com/neural-hive/hive-identity/internal/agent/nodeattest"
	"github.com/neural-hive/hive-identity/internal/agent/sync"
	"github.com/neural-hive/hive-identity/internal/agent/sync/servertest"
	"github.com/neural-hive/hive-identity/internal/agent/workloadattest"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// socketDir is a short directory for unix sockets (108-byte limit).
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

type running struct {
	agent *agent.Agent
	done  chan error
	stop  context.CancelFunc
}

func startAgent(t *testing.T, cfg agent.Config) *running {
	t.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return &running{agent: a, done: done, stop: cancel}
}

func (r *running) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-r.agent.Ready():
	case err := <-r.done:
		t.Fatalf("agent stopped before ready: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("agent not ready")
	}
}

func fetchX509(t *testing.T, sock string) *x509svid.SVID {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	// go-spiffe's client retries while the agent has no identity yet.
	for {
		svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+sock))
		if err == nil {
			return svid
		}
		if ctx.Err() != nil {
			t.Fatalf("fetch X509-SVID: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func baseConfig(t *testing.T, srv *servertest.Server, dataDir, sock string) agent.Config {
	return agent.Config{
		TrustDomain:    td,
		ServerAddress:  srv.Addr(),
		TrustBundle:    srv.Bundle(),
		RetryBootstrap: true,
		DataDir:        dataDir,
		SocketPath:     sock,
		UnixAttestor:   &workloadattest.UnixConfig{},
		SyncInterval:   time.Hour,
		PollInterval:   time.Hour,
	}
}

func TestAgentServesWorkloadsAndRestartsWithoutAttesting(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	uid := fmt.Sprintf("unix:uid:%d", os.Getuid())
	srv.SetEntries(servertest.Entry("e1", td, "/workload", uid))
	dataDir := t.TempDir()
	sock := filepath.Join(socketDir(t), "agent.sock")

	cfg := baseConfig(t, srv, dataDir, sock)
	cfg.NodeAttestor = nodeattest.NewJoinToken("tok")
	r := startAgent(t, cfg)
	r.waitReady(t)
	svid := fetchX509(t, sock)
	if svid.ID.String() != "spiffe://example.org/workload" {
		t.Fatalf("SVID ID = %v", svid.ID)
	}
	if r.agent.ID().String() != "spiffe://example.org/spire/agent/join_token/tok" {
		t.Fatalf("agent ID = %v", r.agent.ID())
	}

	// A new entry reaches an open X509 stream through push.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+sock))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	updates := make(chan *workloadapi.X509Context, 10)
	go func() {
		_ = client.WatchX509Context(ctx, watcher{updates})
	}()
	<-updates
	srv.SetEntries(servertest.Entry("e2", td, "/workload2", uid))
	for {
		select {
		case u := <-updates:
			if len(u.SVIDs) == 2 {
				goto pushed
			}
		case <-ctx.Done():
			t.Fatal("new entry did not reach the stream")
		}
	}
pushed:
	cancel()
	r.stop()
	if err := <-r.done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}

	// Restart: the join token is used up, the stored SVID is enough.
	r2 := startAgent(t, cfg)
	r2.waitReady(t)
	if got := fetchX509(t, sock); got.ID.String() != "spiffe://example.org/workload" {
		t.Fatalf("after restart, SVID ID = %v", got.ID)
	}
	if got := srv.Calls("AttestAgent"); got != 1 {
		t.Fatalf("AttestAgent calls = %d, want 1", got)
	}
}

type watcher struct{ ch chan *workloadapi.X509Context }

func (w watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.ch <- c }
func (w watcher) OnX509ContextWatchError(error)                  {}

func TestAgentStopsWhenBanned(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	sock := filepath.Join(socketDir(t), "agent.sock")
	cfg := baseConfig(t, srv, t.TempDir(), sock)
	cfg.NodeAttestor = nodeattest.NewJoinToken("tok")
	r := startAgent(t, cfg)
	r.waitReady(t)
	select {
	case <-r.agent.Synced():
	case <-time.After(15 * time.Second):
		t.Fatal("no first sync")
	}
	srv.Ban(r.agent.ID())
	select {
	case err := <-r.done:
		if !errors.Is(err, sync.ErrAgentRefused) || !strings.HasPrefix(err.Error(), "agent: ") {
			t.Fatalf("Run = %v, want a refusal", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("banned agent kept running")
	}
}

func TestAgentRefusedToken(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	cfg := baseConfig(t, srv, t.TempDir(), filepath.Join(socketDir(t), "agent.sock"))
	cfg.NodeAttestor = nodeattest.NewJoinToken("never-issued")
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	r := startAgent(t, cfg)
	select {
	case err := <-r.done:
		if !errors.Is(err, sync.ErrAgentRefused) {
			t.Fatalf("Run = %v, want a refusal", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent with a bad token kept running")
	}
	// One refused attestation, counted once with its attestor and reason.
	if got := sampleValue(t, reg, "spire_agent_attestation_errors_total",
		map[string]string{"type": "node", "attestor": "join_token", "reason": "rejected"}); got != 1 {
		t.Fatalf("node attestation errors = %v, want 1", got)
	}
}

// TestAgentTelemetryAndHealth: the agent's metrics cover the SVIDs it
// holds (workloads' and its own), the cache, the bundle and the sync; its
// health listener answers SPIRE's "agent" subsystem.
func TestAgentTelemetryAndHealth(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	uid := fmt.Sprintf("unix:uid:%d", os.Getuid())
	srv.SetEntries(servertest.Entry("e1", td, "/workload", uid))
	sock := filepath.Join(socketDir(t), "agent.sock")
	cfg := baseConfig(t, srv, t.TempDir(), sock)
	cfg.NodeAttestor = nodeattest.NewJoinToken("tok")
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	healthPort := freePort(t)
	cfg.HealthChecks = agent.HealthChecksConfig{ListenerEnabled: true, BindAddress: "127.0.0.1", BindPort: healthPort}
	r := startAgent(t, cfg)
	r.waitReady(t)
	fetchX509(t, sock)

	for _, tt := range []struct {
		name   string
		labels map[string]string
	}{
		{"spiffe_x509_svid_expiration_seconds", map[string]string{"spiffe_id": "spiffe://example.org/workload"}},
		{"spiffe_x509_svid_ttl_seconds", map[string]string{"spiffe_id": "spiffe://example.org/workload"}},
		{"spiffe_x509_svid_expiry_timestamp_seconds", map[string]string{"spiffe_id": "spiffe://example.org/spire/agent/join_token/tok"}},
		{"spire_agent_svid_expiry_timestamp_seconds", nil},
		{"spire_agent_cache_entries", nil},
		{"spire_agent_cache_svids", nil},
		{"spire_agent_bundle_x509_authorities", nil},
		{"spire_agent_sync_revision", nil},
	} {
		if v := sampleValue(t, reg, tt.name, tt.labels); v <= 0 {
			t.Errorf("%s%v = %v, want > 0", tt.name, tt.labels, v)
		}
	}
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(healthPort) + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != `{"agent":{}}`+"\n" {
		t.Fatalf("/ready: %d %q", resp.StatusCode, body)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sampleValue returns the value of the first sample of family name whose
// labels include want; 0 when there is none.
func sampleValue(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestNewValidation(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	for _, tt := range []struct {
		name string
		mod  func(*agent.Config)
		err  string
	}{
		{name: "ok/insecure without bundle", mod: func(c *agent.Config) { c.TrustBundle = nil; c.InsecureBootstrap = true }},
		{name: "ok/memory key manager", mod: func(c *agent.Config) { c.KeyManager = agent.KeyManagerMemory }},
		{name: "fail/no trust domain", mod: func(c *agent.Config) { c.TrustDomain = spiffeid.TrustDomain{} }, err: "trust domain is required"},
		{name: "fail/no server", mod: func(c *agent.Config) { c.ServerAddress = "" }, err: "server address is required"},
		{name: "fail/no data dir", mod: func(c *agent.Config) { c.DataDir = "" }, err: "data directory is required"},
		{name: "fail/no socket", mod: func(c *agent.Config) { c.SocketPath = "" }, err: "socket path is required"},
		{name: "fail/no bundle", mod: func(c *agent.Config) { c.TrustBundle = nil }, err: "a trust bundle is required unless insecure bootstrap is set"},
		{name: "fail/key manager", mod: func(c *agent.Config) { c.KeyManager = "tpm" }, err: `unknown key manager "tpm"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(t, srv, t.TempDir(), filepath.Join(socketDir(t), "agent.sock"))
			tt.mod(&cfg)
			_, err := agent.New(cfg)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "agent: ") {
				t.Fatalf("New = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestLoadTrustBundle(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	dir := t.TempDir()
	pemPath := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.CA.Root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	spiffePath := filepath.Join(dir, "bundle.json")
	doc, err := spiffeBundleDoc(srv.CA.Root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spiffePath, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	emptyPath := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(emptyPath, []byte("nothing here"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path, format, err string
	}{
		{name: "ok/pem default", path: pemPath},
		{name: "ok/pem", path: pemPath, format: "pem"},
		{name: "ok/spiffe", path: spiffePath, format: "spiffe"},
		{name: "fail/missing file", path: filepath.Join(dir, "nope"), err: "no such file"},
		{name: "fail/no certificates", path: emptyPath, err: "no certificates found"},
		{name: "fail/format", path: pemPath, format: "der", err: `unknown trust bundle format "der"`},
		{name: "fail/spiffe given pem", path: pemPath, format: "spiffe", err: "load trust bundle"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := agent.LoadTrustBundle(tt.path, tt.format, td)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 1 || !certs[0].Equal(srv.CA.Root) {
				t.Fatalf("certs = %v", certs)
			}
		})
	}
}

func spiffeBundleDoc(root *x509.Certificate) ([]byte, error) {
	return spiffebundle.FromX509Authorities(td, []*x509.Certificate{root}).Marshal()
}
