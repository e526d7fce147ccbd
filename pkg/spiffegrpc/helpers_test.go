package spiffegrpc_test

import (
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

var (
	tdA = spiffeid.RequireTrustDomainFromString("td-a")
	tdB = spiffeid.RequireTrustDomainFromString("td-b")
	tdC = spiffeid.RequireTrustDomainFromString("td-c")

	serverID = spiffeid.RequireFromString("spiffe://td-a/service-registry")
	clientID = spiffeid.RequireFromString("spiffe://td-a/ns/neural-hive-execution/sa/worker-agents")
)

// testServer is a gRPC server with the WhoAmI service on a real listener.
type testServer struct {
	addr  string
	calls atomic.Int64 // handler invocations
}

// whoHandler answers with the authenticated SPIFFE ID.
func (s *testServer) who(ctx context.Context) string {
	s.calls.Add(1)
	id, ok := spiffegrpc.PeerIDFromContext(ctx)
	if !ok {
		return "<none>"
	}
	return id.String()
}

// startServer serves WhoAmI with opts on TCP loopback ("tcp") or on a unix
// socket in a short temporary directory ("unix").
func startServer(tb testing.TB, network string, opts ...grpc.ServerOption) *testServer {
	tb.Helper()
	var lis net.Listener
	var err error
	ts := &testServer{}
	switch network {
	case "unix":
		dir, derr := os.MkdirTemp("", "hid")
		if derr != nil {
			tb.Fatal(derr)
		}
		tb.Cleanup(func() { _ = os.RemoveAll(dir) })
		sock := filepath.Join(dir, "s.sock")
		lis, err = net.Listen("unix", sock)
		ts.addr = "unix://" + sock
	default:
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			ts.addr = lis.Addr().String()
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	spiffegrpctest.RegisterWhoAmI(srv, ts.who)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	tb.Cleanup(func() {
		srv.Stop()
		wg.Wait()
	})
	return ts
}

func dial(tb testing.TB, addr string, creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

func ctxT(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func newMetrics(tb testing.TB) (*spiffegrpc.Metrics, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	m, err := spiffegrpc.NewMetrics(reg)
	if err != nil {
		tb.Fatal(err)
	}
	return m, reg
}

// wantMetrics compares the whole content of the named counters, for one
// method, with the given attempts by status and failures by reason.
func wantMetrics(tb testing.TB, reg *prometheus.Registry, prefix, method string, success, failure int, reasons map[spiffegrpc.Reason]int) {
	tb.Helper()
	var b strings.Builder
	attempts := prefix + "_attempts_total"
	failures := prefix + "_failures_total"
	kind := "X509-SVID (mTLS)"
	if prefix == "grpc_jwt_auth" {
		kind = "JWT-SVID"
	}
	if success+failure > 0 {
		b.WriteString("# HELP " + attempts + " gRPC " + kind + " authentication attempts by outcome.\n# TYPE " + attempts + " counter\n")
		if failure > 0 {
			b.WriteString(attempts + `{method="` + method + `",status="failure"} ` + strconv.Itoa(failure) + "\n")
		}
		if success > 0 {
			b.WriteString(attempts + `{method="` + method + `",status="success"} ` + strconv.Itoa(success) + "\n")
		}
	}
	if len(reasons) > 0 {
		b.WriteString("# HELP " + failures + " gRPC " + kind + " authentication failures by reason.\n# TYPE " + failures + " counter\n")
		for _, r := range slices.Sorted(maps.Keys(reasons)) {
			b.WriteString(failures + `{method="` + method + `",reason="` + string(r) + `"} ` + strconv.Itoa(reasons[r]) + "\n")
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(b.String()), attempts, failures); err != nil {
		tb.Errorf("metrics: %v", err)
	}
}

// wantStatus checks the gRPC code and a message substring of err.
func wantStatus(tb testing.TB, err error, code string, msg string) {
	tb.Helper()
	st, _ := status.FromError(err)
	if st.Code().String() != code {
		tb.Fatalf("code = %s (%v), want %s", st.Code(), err, code)
	}
	if !strings.Contains(st.Message(), msg) {
		tb.Errorf("message %q does not contain %q", st.Message(), msg)
	}
}
