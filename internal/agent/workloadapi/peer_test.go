package workloadapi_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/neural-hive/hive-identity/internal/agent/workloadapi"
)

// fakeProcStat writes <procDir>/<pid>/stat with the given start time.
func fakeProcStat(tb testing.TB, procDir string, pid int, start string) {
	tb.Helper()
	dir := filepath.Join(procDir, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	// Fields 1..22: pid (comm) state ppid ... starttime; the command name
	// has a space and a parenthesis, as real ones may.
	stat := fmt.Sprintf("%d (hid (test) x) S 1 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 8 0 %s 100000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n", pid, start)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// TestPIDReuseGuard_T6: T6. The process behind the caller's PID is checked
// after attestation: if its start time changed between accept and the end
// of attestation (another process got the PID), the call is refused with
// Unauthenticated and nothing is served.
func TestPIDReuseGuard_T6(t *testing.T) {
	procDir := t.TempDir()
	pid := os.Getpid()
	fakeProcStat(t, procDir, pid, "111")
	var reuse atomic.Bool
	attestor := workloadapi.AttestorFunc(func(_ context.Context, got int32) ([]string, error) {
		if int(got) != pid {
			return nil, fmt.Errorf("attested pid %d, want %d", got, pid)
		}
		if reuse.Load() {
			// The original caller exits and a new process takes its PID
			// while the attestor reads its files.
			fakeProcStat(t, procDir, pid, "222")
		}
		return []string{mySelector()}, nil
	})
	e := newEnv(t, func(c *workloadapi.Config) {
		c.ProcDir = procDir
		c.Attestor = attestor
	})
	e.addIdentity(entry("a", "spiffe://neural-hive.local/x", mySelector()))

	fetch := func(c workload.SpiffeWorkloadAPIClient) error {
		s, err := c.FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	if err := fetch(e.client()); err != nil {
		t.Fatalf("same process: %v", err)
	}

	reuse.Store(true)
	fakeProcStat(t, procDir, pid, "111")
	err := fetch(e.client()) // a new connection, accepted with start time 111
	wantStatus(t, err, codes.Unauthenticated, "could not verify existence of the original caller: new process detected: process starttime 222 does not match original caller 111")

	fakeProcStat(t, procDir, pid, "111")
	_, err = e.client().FetchJWTSVID(withHeader(testCtx(t)), &workload.JWTSVIDRequest{Audience: []string{"x"}})
	wantStatus(t, err, codes.Unauthenticated, "could not verify existence of the original caller")
	if e.signer.Calls() != 0 {
		t.Fatal("a JWT-SVID was signed for a reused PID")
	}

	fakeProcStat(t, procDir, pid, "111")
	resp, err := e.httpClient().Get("http://localhost/v1/spiffe/workload/x509svid")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("HTTP status = %d, want 401", resp.StatusCode)
	}
}

// TestUnknownCallerRefusedAtAccept_T6: T6. A caller whose /proc entry cannot
// be read when the connection is accepted is disconnected.
func TestUnknownCallerRefusedAtAccept_T6(t *testing.T) {
	e := newEnv(t, func(c *workloadapi.Config) { c.ProcDir = t.TempDir() })
	e.addIdentity(entry("a", "spiffe://neural-hive.local/x", mySelector()))
	s, err := e.client().FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	wantStatus(t, err, codes.Unavailable, "")
}

func countFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(ents)
}

// TestConnectionChurn_T14: T14. 10,000 connect/close cycles (raw connects,
// partial HTTP/1.1 and HTTP/2 prefaces, full gRPC and HTTP calls) leave no
// goroutine and no file descriptor behind.
func TestConnectionChurn_T14(t *testing.T) {
	e := newEnv(t)
	e.addIdentity(entry("a", "spiffe://neural-hive.local/x", mySelector()))

	grpcCycle := func() {
		cc, err := grpc.NewClient(e.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		s, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		if err != nil {
			t.Fatalf("gRPC cycle: %v", err)
		}
		cc.Close()
	}
	httpCycle := func() {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock)
		}}
		resp, err := (&http.Client{Transport: tr}).Get("http://localhost/v1/spiffe/workload/x509svid")
		if err != nil {
			t.Fatalf("HTTP cycle: %v", err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
	}
	rawCycle := func(payload string) {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if payload != "" {
			_, _ = c.Write([]byte(payload))
		}
		c.Close()
	}
	// Warm up lazily started goroutines (gRPC resolvers, HTTP transport).
	grpcCycle()
	httpCycle()
	waitSettled(t, -1, -1)
	baseG, baseFD := runtime.NumGoroutine(), countFDs(t)

	n := 10000
	if testing.Short() {
		n = 1000
	}
	for i := range n {
		switch i % 100 {
		case 0:
			grpcCycle()
		case 50:
			httpCycle()
		case 10:
			rawCycle("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		case 20:
			rawCycle("PRI * HTT")
		case 30:
			rawCycle("GET /v1/spiffe/workload/x509svid HTTP/1.1\r\n")
		default:
			rawCycle("")
		}
	}
	g, fd := waitSettled(t, baseG, baseFD)
	t.Logf("after %d cycles: goroutines %d (before %d), fds %d (before %d)", n, g, baseG, fd, baseFD)
	if g > baseG || fd > baseFD {
		t.Fatalf("leak after %d cycles: goroutines %d > %d or fds %d > %d", n, g, baseG, fd, baseFD)
	}
}

// waitSettled waits (bounded) until goroutines and fds are at most the
// given counts (-1: until they stop changing) and returns them.
func waitSettled(tb testing.TB, maxG, maxFD int) (int, int) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	prevG, prevFD := -1, -1
	for {
		g, fd := runtime.NumGoroutine(), countFDs(tb)
		switch {
		case maxG >= 0 && g <= maxG && fd <= maxFD:
			return g, fd
		case maxG < 0 && g == prevG && fd == prevFD:
			return g, fd
		case time.Now().After(deadline):
			return g, fd
		}
		prevG, prevFD = g, fd
		time.Sleep(100 * time.Millisecond)
	}
}
