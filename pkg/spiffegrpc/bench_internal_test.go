package spiffegrpc

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// BenchmarkMTLSInterceptor is what MTLSAuth adds to each call on an
// established connection, without the network: the per-call re-check
// (expiry, root still in the bundle), the Authorizer, the metrics and the
// context value. The chain itself is verified once per connection.
func BenchmarkMTLSInterceptor(b *testing.B) {
	td := spiffeid.RequireTrustDomainFromString("td-a")
	ca := spiffegrpctest.NewCA(b, td)
	clientID := spiffeid.RequireFromString("spiffe://td-a/worker")
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	a, err := NewMTLSAuth(ca.X509SVID(b, spiffeid.RequireFromString("spiffe://td-a/server")), ca.X509Bundle(), AuthorizeID(clientID), WithMetrics(m))
	if err != nil {
		b.Fatal(err)
	}
	client := ca.X509SVID(b, clientID)
	info := a.newAuthInfo(credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: client.Certificates}}, nil)
	if info.err != nil {
		b.Fatal(info.err)
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{}, AuthInfo: info})
	intercept := a.UnaryServerInterceptor()
	srvInfo := &grpc.UnaryServerInfo{FullMethod: "/svc/Method"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := intercept(ctx, nil, srvInfo, handler); err != nil {
			b.Fatal(err)
		}
	}
}
