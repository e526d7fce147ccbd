package spiffegrpc_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
)

var (
	registryID = spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/service-registry")
	workerID   = spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents")
	orchID     = spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/orchestrator-dynamic")
)

// A service (here the Service Registry) that accepts only the worker agents
// over mTLS, and a worker calling it. Both get their SVIDs and bundles from
// their SPIRE agent through go-spiffe's X509Source.
func ExampleNewMTLSAuth() {
	ctx := context.Background()
	registrySocket, workerSocket, done := exampleAgents(registryID)
	defer done()

	// Server. In production, omit WithAddr: SPIFFE_ENDPOINT_SOCKET names
	// the agent socket (unix:///run/spire/sockets/agent.sock).
	serverSource, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(registrySocket)))
	if err != nil {
		panic(err)
	}
	defer serverSource.Close()
	metrics, err := spiffegrpc.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	auth, err := spiffegrpc.NewMTLSAuth(serverSource, serverSource, spiffegrpc.AuthorizeID(workerID),
		spiffegrpc.WithMetrics(metrics), spiffegrpc.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		panic(err)
	}
	server := grpc.NewServer(auth.ServerOptions()...)
	// Handlers read the caller with spiffegrpc.PeerIDFromContext(ctx).
	spiffegrpctest.RegisterWhoAmI(server, func(ctx context.Context) string {
		id, _ := spiffegrpc.PeerIDFromContext(ctx)
		return id.String()
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = server.Serve(lis) }()
	defer server.Stop()

	// Client: go-spiffe's credentials, verifying the server's SPIFFE ID.
	clientSource, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(workerSocket)))
	if err != nil {
		panic(err)
	}
	defer clientSource.Close()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(
		grpccredentials.MTLSClientCredentials(clientSource, clientSource, tlsconfig.AuthorizeID(registryID))))
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	who, err := spiffegrpctest.CallWho(ctx, conn)
	fmt.Println(who, err)
	// Output: spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents <nil>
}

// A service (here the Orchestrator) that accepts JWT-SVIDs for its own
// SPIFFE ID over TLS, and a worker sending one. The worker's token is
// fetched once and reused until half its lifetime.
func ExampleNewJWTAuth() {
	ctx := context.Background()
	orchSocket, workerSocket, done := exampleAgents(orchID)
	defer done()

	orchSource, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(orchSocket)))
	if err != nil {
		panic(err)
	}
	defer orchSource.Close()
	jwtBundles, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(orchSocket)))
	if err != nil {
		panic(err)
	}
	defer jwtBundles.Close()
	auth, err := spiffegrpc.NewJWTAuth(jwtBundles, orchID.String(), spiffegrpc.AuthorizeMemberOf(orchID.TrustDomain()))
	if err != nil {
		panic(err)
	}
	server := grpc.NewServer(append(auth.ServerOptions(), grpc.Creds(grpccredentials.TLSServerCredentials(orchSource)))...)
	spiffegrpctest.RegisterWhoAmI(server, func(ctx context.Context) string {
		id, _ := spiffegrpc.PeerIDFromContext(ctx)
		return id.String()
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = server.Serve(lis) }()
	defer server.Stop()

	workerJWT, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(workerSocket)))
	if err != nil {
		panic(err)
	}
	defer workerJWT.Close()
	workerX509, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(workerSocket)))
	if err != nil {
		panic(err)
	}
	defer workerX509.Close()
	token, err := spiffegrpc.NewJWTCredentials(workerJWT, orchID.String())
	if err != nil {
		panic(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(grpccredentials.TLSClientCredentials(workerX509, tlsconfig.AuthorizeID(orchID))),
		grpc.WithPerRPCCredentials(token))
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	who, err := spiffegrpctest.CallWho(ctx, conn)
	fmt.Println(who, err)
	// Output: spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents <nil>
}

// The Service Registry's policy: only the worker agents register, only the
// orchestrator discovers.
func ExampleAuthorizeMethods() {
	policy := spiffegrpc.AuthorizeMethods(map[string]spiffegrpc.Authorizer{
		"/registry.v1.Registry/Register":  spiffegrpc.AuthorizeID(workerID),
		"/registry.v1.Registry/Heartbeat": spiffegrpc.AuthorizeID(workerID),
		"/registry.v1.Registry/Discover":  spiffegrpc.AuthorizeID(orchID),
	})
	ctx := context.Background()
	fmt.Println(policy(ctx, workerID, "/registry.v1.Registry/Register"))
	fmt.Println(policy(ctx, orchID, "/registry.v1.Registry/Discover"))
	fmt.Println(policy(ctx, workerID, "/registry.v1.Registry/Discover"))
	// Output:
	// <nil>
	// <nil>
	// permission denied: spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents is not spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/orchestrator-dynamic
}

// Path prefixes match whole segments.
func ExampleAuthorizePathPrefix() {
	td := spiffeid.RequireTrustDomainFromString("neural-hive.local")
	execution := spiffegrpc.AuthorizePathPrefix(td, "/ns/neural-hive-execution")
	ctx := context.Background()
	fmt.Println(execution(ctx, workerID, "") == nil)
	fmt.Println(execution(ctx, spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution-canary/sa/x"), "") == nil)
	// Output:
	// true
	// false
}

// exampleAgents starts fake SPIRE agent sockets for a server workload and a
// worker in neural-hive.local: both get X509-SVIDs and the JWT bundle, and the
// worker gets JWT-SVIDs.
func exampleAgents(serverID spiffeid.ID) (serverSocket, workerSocket string, done func()) {
	tb := &exampleTB{}
	ca := spiffegrpctest.NewCA(tb, spiffeid.RequireTrustDomainFromString("neural-hive.local"))
	server, worker := spiffegrpctest.NewWorkloadAPI(tb), spiffegrpctest.NewWorkloadAPI(tb)
	for _, a := range []struct {
		api *spiffegrpctest.WorkloadAPI
		id  spiffeid.ID
	}{{server, serverID}, {worker, workerID}} {
		if err := a.api.SetX509(ca.X509SVID(tb, a.id), ca.X509Bundle()); err != nil {
			panic(err)
		}
		if err := a.api.SetJWTBundles(ca.JWTBundle()); err != nil {
			panic(err)
		}
	}
	worker.SetJWTIssuer(ca, workerID, time.Hour)
	return server.Addr(), worker.Addr(), tb.cleanup
}

// exampleTB lets examples use the spiffegrpctest helpers outside a test.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (*exampleTB) Helper()                           {}
func (*exampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (*exampleTB) Failed() bool                      { return false }
func (tb *exampleTB) Cleanup(f func())               { tb.cleanups = append(tb.cleanups, f) }
func (tb *exampleTB) cleanup() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}
