package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeWorkloadAPI is a test fixture: a SPIFFE Workload API server (go-spiffe's
// proto) on a real unix socket, serving whatever the test configures, plus
// gRPC's health service. Like an agent it requires the security header and
// keeps streams open after the first message until the client goes away.
type fakeWorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	// x509 is sent on every FetchX509SVID stream; nil means "hang until the
	// client gives up". Further messages can be pushed with pushX509.
	x509 *workload.X509SVIDResponse
	// jwtBundles is sent on every FetchJWTBundles stream.
	jwtBundles *workload.JWTBundlesResponse
	// fetchJWT and validateJWT answer the unary calls.
	fetchJWT    func(*workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error)
	validateJWT func(*workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error)

	health *health.Server

	mu       sync.Mutex
	watchers []chan *workload.X509SVIDResponse
	calls    []string // methods called, in order
}

// startFakeWorkloadAPI serves f on <dir>/a/api.sock (dir is a fresh short
// temp dir, as the reference capture's $RUN) until the test ends.
func startFakeWorkloadAPI(tb testing.TB, f *fakeWorkloadAPI) (dir, socketPath string) {
	tb.Helper()
	dir = tempDir(tb)
	socketPath = filepath.Join(dir, "a", "api.sock")
	if err := os.Mkdir(filepath.Dir(socketPath), 0o755); err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("unix", socketPath)
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, f)
	f.health = health.NewServer()
	healthpb.RegisterHealthServer(srv, f.health)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	tb.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return dir, socketPath
}

// tempDir returns a short temporary directory (unix socket paths are limited
// to 108 bytes), removed when the test ends.
func tempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (f *fakeWorkloadAPI) record(ctx context.Context, method string) error {
	f.mu.Lock()
	f.calls = append(f.calls, method)
	f.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

func (f *fakeWorkloadAPI) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// pushX509 sends resp to every open FetchX509SVID stream.
func (f *fakeWorkloadAPI) pushX509(resp *workload.X509SVIDResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.watchers {
		ch <- resp
	}
}

func (f *fakeWorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	ctx := stream.Context()
	if err := f.record(ctx, "FetchX509SVID"); err != nil {
		return err
	}
	if f.x509 == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	// Registered before the first send, so a client that got the first
	// message can count on later pushes reaching it.
	ch := make(chan *workload.X509SVIDResponse, 4)
	f.mu.Lock()
	f.watchers = append(f.watchers, ch)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, w := range f.watchers {
			if w == ch {
				f.watchers = append(f.watchers[:i], f.watchers[i+1:]...)
				break
			}
		}
	}()
	if err := stream.Send(f.x509); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp := <-ch:
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

func (f *fakeWorkloadAPI) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream workload.SpiffeWorkloadAPI_FetchJWTBundlesServer) error {
	ctx := stream.Context()
	if err := f.record(ctx, "FetchJWTBundles"); err != nil {
		return err
	}
	if f.jwtBundles == nil {
		return status.Error(codes.Unavailable, "no bundles configured")
	}
	if err := stream.Send(f.jwtBundles); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeWorkloadAPI) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := f.record(ctx, "FetchJWTSVID"); err != nil {
		return nil, err
	}
	if f.fetchJWT == nil {
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	}
	return f.fetchJWT(req)
}

func (f *fakeWorkloadAPI) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if err := f.record(ctx, "ValidateJWTSVID"); err != nil {
		return nil, err
	}
	if f.validateJWT == nil {
		return nil, status.Error(codes.Unimplemented, "not configured")
	}
	return f.validateJWT(req)
}

// result is what one CLI invocation produced.
type result struct {
	code   int
	stdout string
	stderr string
}

// runCLI runs the command line in-process with a clock, returning its exit
// code and output.
func runCLI(ctx context.Context, now func() time.Time, args ...string) result {
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, now: now}
	code := e.run(ctx, args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// steppingClock returns a clock that starts at start and advances by step on
// every reading, so durations printed by the CLI are known in advance.
func steppingClock(start time.Time, step time.Duration) func() time.Time {
	var mu sync.Mutex
	next := start
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := next
		next = next.Add(step)
		return t
	}
}

// syncBuffer is an io.Writer safe for a writer goroutine and a reading test,
// which can wait for the output to satisfy a condition.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor blocks until cond holds for the buffer's content or the test's
// deadline context ends.
func (b *syncBuffer) waitFor(ctx context.Context, tb testing.TB, what string, cond func(string) bool) {
	tb.Helper()
	for !cond(b.String()) {
		select {
		case <-b.changed:
		case <-ctx.Done():
			tb.Fatalf("waiting for %s: %v; output so far:\n%s", what, ctx.Err(), b.String())
		}
	}
}

// countBlocks counts the "Received N svid" headers printed so far.
func countBlocks(s string) int { return strings.Count(s, "Received ") }
