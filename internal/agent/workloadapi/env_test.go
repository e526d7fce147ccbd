package workloadapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/agent/cache/cachetest"
	"github.com/neural-hive/hive-identity/internal/agent/workloadapi"
	"github.com/neural-hive/hive-identity/internal/agent/workloadattest"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("neural-hive.local")
	partner = spiffeid.RequireTrustDomainFromString("partner.example")
)

// mySelector is the unix:uid selector of the test process, as the real
// unix attestor reports it.
func mySelector() string { return "unix:uid:" + strconv.Itoa(os.Geteuid()) }

// otherSelector matches no process of the test.
func otherSelector() string { return "unix:uid:" + strconv.Itoa(os.Geteuid()+4242) }

type env struct {
	t      testing.TB
	dir    string
	sock   string
	ca     *cachetest.CA
	signer *cachetest.JWTSigner
	cache  *cache.Cache
	srv    *workloadapi.Server
	cancel context.CancelFunc
	done   chan error
}

type envOption func(*workloadapi.Config)

func withForeignClaims(claims ...string) envOption {
	return func(c *workloadapi.Config) { c.AllowedForeignJWTClaims = claims }
}

// shortDir returns a short temp dir (unix socket paths are limited to 108
// bytes).
func shortDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// newEnv starts a Workload API server on a real unix socket, with a cache
// holding the test CA's bundle and the real unix attestor.
func newEnv(tb testing.TB, opts ...envOption) *env {
	tb.Helper()
	dir := shortDir(tb)
	e := &env{t: tb, dir: dir, sock: filepath.Join(dir, "agent.sock"), ca: cachetest.NewCA(tb, td)}
	e.signer = &cachetest.JWTSigner{CA: e.ca}
	c, err := cache.New(cache.Config{TrustDomain: td, JWTSigner: e.signer})
	if err != nil {
		tb.Fatal(err)
	}
	c.SetBundle(e.ca.Bundle())
	e.cache = c
	cfg := workloadapi.Config{
		SocketPath:  e.sock,
		TrustDomain: td,
		Cache:       c,
		Attestor:    workloadattest.NewUnix(workloadattest.UnixConfig{}),
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.sock = cfg.SocketPath
	e.srv, err = workloadapi.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	e.start()
	tb.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- e.srv.Run(ctx) }()
	select {
	case <-e.srv.Ready():
	case err := <-e.done:
		e.t.Fatalf("Run: %v", err)
	}
}

// stop cancels Run and checks it returns nil and removes the socket.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run returned %v, want nil on cancel", err)
		}
	case <-time.After(10 * time.Second):
		e.t.Fatal("Run did not return after cancel")
	}
	if _, err := os.Lstat(e.sock); !errors.Is(err, os.ErrNotExist) {
		e.t.Errorf("socket left behind after Run: %v", err)
	}
}

// addIdentity creates an entry with an SVID.
func (e *env) addIdentity(entries ...*cache.Entry) {
	all := append(e.cache.Entries(), entries...)
	e.cache.SetEntries(all)
	svids := make(map[string]*cache.X509SVID)
	for _, en := range entries {
		svids[en.ID] = e.ca.SVIDFor(e.t, en)
	}
	e.cache.SetSVIDs(svids)
}

func (e *env) addr() string { return "unix://" + e.sock }

// conn returns a raw gRPC client connection to the socket.
func (e *env) conn() *grpc.ClientConn {
	e.t.Helper()
	cc, err := grpc.NewClient(e.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

func (e *env) client() workload.SpiffeWorkloadAPIClient {
	return workload.NewSpiffeWorkloadAPIClient(e.conn())
}

// httpClient speaks HTTP/1.1 over the socket.
func (e *env) httpClient() *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock)
		},
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// wantStatus checks the gRPC code and that the message contains msg.
func wantStatus(tb testing.TB, err error, code codes.Code, msg string) {
	tb.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != code || !strings.Contains(st.Message(), msg) {
		tb.Fatalf("error = %v, want code %v with message containing %q", err, code, msg)
	}
}

func entry(id, spiffeID string, selectors ...string) *cache.Entry {
	return cachetest.Entry(id, spiffeID, selectors...)
}
