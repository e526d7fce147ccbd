package spiffegrpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/local"
	"google.golang.org/grpc/metadata"
)

// BenchmarkJWTInterceptor is the validation cost the JWT interceptor adds
// to one unary call, without the network: "cached" is the steady state (the
// same token on every call until it is refreshed at half-life), "uncached"
// a full validation (signature included) on every call, "go-spiffe" is
// jwtsvid.ParseAndValidate for reference.
func BenchmarkJWTInterceptor(b *testing.B) {
	ca := spiffegrpctest.NewCA(b, tdA)
	bundles := jwtbundle.NewSet(ca.JWTBundle())
	token := ca.JWTSVID(b, clientID, []string{audience}, time.Hour)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
	info := &grpc.UnaryServerInfo{FullMethod: spiffegrpctest.MethodWho}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	metrics, err := spiffegrpc.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		opts []spiffegrpc.Option
	}{
		{"cached", []spiffegrpc.Option{spiffegrpc.WithMetrics(metrics)}},
		{"uncached", []spiffegrpc.Option{spiffegrpc.WithMetrics(metrics), spiffegrpc.WithJWTCacheSize(0)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			auth, err := spiffegrpc.NewJWTAuth(bundles, audience, spiffegrpc.AuthorizeMemberOf(tdA), bc.opts...)
			if err != nil {
				b.Fatal(err)
			}
			intercept := auth.UnaryServerInterceptor()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := intercept(ctx, nil, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("go-spiffe-ParseAndValidate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jwtsvid.ParseAndValidate(token, bundles, []string{audience}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJWTCall is one unary call over a unix socket carrying the same
// bearer token: without auth ("baseline"), and through JWTAuth.
func BenchmarkJWTCall(b *testing.B) {
	ca := spiffegrpctest.NewCA(b, tdA)
	bundles := jwtbundle.NewSet(ca.JWTBundle())
	token := ca.JWTSVID(b, clientID, []string{audience}, time.Hour)
	for _, bc := range []struct {
		name string
		auth bool
		opts []spiffegrpc.Option
	}{
		{"baseline", false, nil},
		{"jwt-cached", true, nil},
		{"jwt-uncached", true, []spiffegrpc.Option{spiffegrpc.WithJWTCacheSize(0)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := []grpc.ServerOption{grpc.Creds(local.NewCredentials())}
			if bc.auth {
				auth, err := spiffegrpc.NewJWTAuth(bundles, audience, spiffegrpc.AuthorizeMemberOf(tdA), bc.opts...)
				if err != nil {
					b.Fatal(err)
				}
				opts = append(opts, auth.ServerOptions()...)
			}
			srv := startServer(b, "unix", opts...)
			cc := dial(b, srv.addr, local.NewCredentials())
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
			benchCalls(b, ctx, cc)
		})
	}
}

// BenchmarkMTLSCall is one unary call on an established TCP loopback
// connection: "static" is a plain gRPC TLS server with fixed certificates
// and standard client verification, no interceptors; "svid-static" is
// MTLSAuth with an SVID and bundle held in memory; "svid-workloadapi" is
// MTLSAuth on go-spiffe X509Sources fed by a Workload API. The issue's
// target: svid within 5% of static.
func BenchmarkMTLSCall(b *testing.B) {
	ca := spiffegrpctest.NewCA(b, tdA)
	dns := func(c *x509.Certificate) { c.DNSNames = []string{"localhost"} }
	serverSVID, clientSVID := ca.X509SVID(b, serverID, dns), ca.X509SVID(b, clientID)
	bundle := ca.X509Bundle()

	b.Run("static", func(b *testing.B) {
		srv := startServer(b, "tcp", grpc.Creds(credentials.NewTLS(staticServerTLS(b, serverSVID.Certificates, serverSVID.PrivateKey, ca.Cert()))))
		cc := dial(b, srv.addr, credentials.NewTLS(staticClientTLS(b, clientSVID.Certificates, clientSVID.PrivateKey, ca.Cert())))
		benchCalls(b, context.Background(), cc)
	})
	b.Run("svid-static", func(b *testing.B) {
		auth, err := spiffegrpc.NewMTLSAuth(serverSVID, bundle, spiffegrpc.AuthorizeID(clientID), benchMetrics(b))
		if err != nil {
			b.Fatal(err)
		}
		srv := startServer(b, "tcp", auth.ServerOptions()...)
		cc := dial(b, srv.addr, grpccredentials.MTLSClientCredentials(clientSVID, bundle, tlsconfig.AuthorizeID(serverID)))
		benchCalls(b, context.Background(), cc)
	})
	b.Run("svid-workloadapi", func(b *testing.B) {
		serverSrc, clientSrc := workloadSource(b, serverSVID, ca), workloadSource(b, clientSVID, ca)
		auth, err := spiffegrpc.NewMTLSAuth(serverSrc, serverSrc, spiffegrpc.AuthorizeID(clientID), benchMetrics(b))
		if err != nil {
			b.Fatal(err)
		}
		srv := startServer(b, "tcp", auth.ServerOptions()...)
		cc := dial(b, srv.addr, grpccredentials.MTLSClientCredentials(clientSrc, clientSrc, tlsconfig.AuthorizeID(serverID)))
		benchCalls(b, context.Background(), cc)
	})
}

// BenchmarkMTLSHandshake is a new connection and its first call.
func BenchmarkMTLSHandshake(b *testing.B) {
	ca := spiffegrpctest.NewCA(b, tdA)
	dns := func(c *x509.Certificate) { c.DNSNames = []string{"localhost"} }
	serverSVID, clientSVID := ca.X509SVID(b, serverID, dns), ca.X509SVID(b, clientID)
	bundle := ca.X509Bundle()
	run := func(b *testing.B, addr string, creds credentials.TransportCredentials) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := spiffegrpctest.CallWho(ctx, cc); err != nil {
				b.Fatal(err)
			}
			_ = cc.Close()
		}
	}
	b.Run("static", func(b *testing.B) {
		srv := startServer(b, "tcp", grpc.Creds(credentials.NewTLS(staticServerTLS(b, serverSVID.Certificates, serverSVID.PrivateKey, ca.Cert()))))
		run(b, srv.addr, credentials.NewTLS(staticClientTLS(b, clientSVID.Certificates, clientSVID.PrivateKey, ca.Cert())))
	})
	b.Run("svid-static", func(b *testing.B) {
		auth, err := spiffegrpc.NewMTLSAuth(serverSVID, bundle, spiffegrpc.AuthorizeID(clientID))
		if err != nil {
			b.Fatal(err)
		}
		srv := startServer(b, "tcp", auth.ServerOptions()...)
		run(b, srv.addr, grpccredentials.MTLSClientCredentials(clientSVID, bundle, tlsconfig.AuthorizeID(serverID)))
	})
}

func benchCalls(b *testing.B, ctx context.Context, cc *grpc.ClientConn) {
	b.Helper()
	if _, err := spiffegrpctest.CallWho(ctx, cc); err != nil { // connect outside the loop
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spiffegrpctest.CallWho(ctx, cc); err != nil {
			b.Fatal(err)
		}
	}
}

func benchMetrics(b *testing.B) spiffegrpc.Option {
	m, err := spiffegrpc.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return spiffegrpc.WithMetrics(m)
}

func keyPair(b *testing.B, certs []*x509.Certificate, key any) tls.Certificate {
	b.Helper()
	c := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, cert := range certs {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

func staticServerTLS(b *testing.B, certs []*x509.Certificate, key any, root *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{keyPair(b, certs, key)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
}

func staticClientTLS(b *testing.B, certs []*x509.Certificate, key any, root *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{keyPair(b, certs, key)},
		RootCAs:      pool,
		ServerName:   "localhost",
	}
}

func workloadSource(b *testing.B, svid *x509svid.SVID, ca *spiffegrpctest.CA) *workloadapi.X509Source {
	b.Helper()
	api := spiffegrpctest.NewWorkloadAPI(b)
	if err := api.SetX509(svid, ca.X509Bundle()); err != nil {
		b.Fatal(err)
	}
	src, err := workloadapi.NewX509Source(context.Background(), workloadapi.WithClientOptions(workloadapi.WithAddr(api.Addr())))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = src.Close() })
	return src
}

// BenchmarkMTLSVersusStatic alternates one call to the static-certificate
// server and one to the MTLSAuth server (SVID sources from a Workload API)
// on established connections, so that load on a shared machine hits both
// alike, and reports each one's mean latency and their ratio
// (svid/static; the target is <= 1.05).
func BenchmarkMTLSVersusStatic(b *testing.B) {
	ca := spiffegrpctest.NewCA(b, tdA)
	dns := func(c *x509.Certificate) { c.DNSNames = []string{"localhost"} }
	serverSVID, clientSVID := ca.X509SVID(b, serverID, dns), ca.X509SVID(b, clientID)
	static := startServer(b, "tcp", grpc.Creds(credentials.NewTLS(staticServerTLS(b, serverSVID.Certificates, serverSVID.PrivateKey, ca.Cert()))))
	staticCC := dial(b, static.addr, credentials.NewTLS(staticClientTLS(b, clientSVID.Certificates, clientSVID.PrivateKey, ca.Cert())))
	serverSrc, clientSrc := workloadSource(b, serverSVID, ca), workloadSource(b, clientSVID, ca)
	auth, err := spiffegrpc.NewMTLSAuth(serverSrc, serverSrc, spiffegrpc.AuthorizeID(clientID), benchMetrics(b))
	if err != nil {
		b.Fatal(err)
	}
	svid := startServer(b, "tcp", auth.ServerOptions()...)
	svidCC := dial(b, svid.addr, grpccredentials.MTLSClientCredentials(clientSrc, clientSrc, tlsconfig.AuthorizeID(serverID)))
	ctx := context.Background()
	for _, cc := range []*grpc.ClientConn{staticCC, svidCC} {
		if _, err := spiffegrpctest.CallWho(ctx, cc); err != nil {
			b.Fatal(err)
		}
	}
	var staticNS, svidNS time.Duration
	n := 0
	for b.Loop() {
		first, second := staticCC, svidCC
		if n%2 == 1 { // alternate the order too
			first, second = svidCC, staticCC
		}
		t0 := time.Now()
		if _, err := spiffegrpctest.CallWho(ctx, first); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := spiffegrpctest.CallWho(ctx, second); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if n%2 == 0 {
			staticNS += t1.Sub(t0)
			svidNS += t2.Sub(t1)
		} else {
			svidNS += t1.Sub(t0)
			staticNS += t2.Sub(t1)
		}
		n++
	}
	b.ReportMetric(float64(staticNS.Nanoseconds())/float64(n), "static-ns/call")
	b.ReportMetric(float64(svidNS.Nanoseconds())/float64(n), "svid-ns/call")
	b.ReportMetric(float64(svidNS)/float64(staticNS), "svid/static")
}
