package endpoints_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
	"github.com/neural-hive/hive-identity/internal/server/endpoints"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// whoami answers with the role and ID the interceptors put in the context.
type whoami struct {
	entryv1.UnimplementedEntryServer
	bundlev1.UnimplementedBundleServer
	svidv1.UnimplementedSVIDServer
}

func (w whoami) Register(r grpc.ServiceRegistrar) {
	entryv1.RegisterEntryServer(r, w)
	bundlev1.RegisterBundleServer(r, w)
	svidv1.RegisterSVIDServer(r, w)
}

func caller(ctx context.Context) string {
	c, _ := api.CallerFrom(ctx)
	return c.Role.String() + " " + c.ID.String()
}

func (whoami) ListEntries(ctx context.Context, _ *entryv1.ListEntriesRequest) (*entryv1.ListEntriesResponse, error) {
	return &entryv1.ListEntriesResponse{NextPageToken: caller(ctx)}, nil
}

func (whoami) GetAuthorizedEntries(ctx context.Context, _ *entryv1.GetAuthorizedEntriesRequest) (*entryv1.GetAuthorizedEntriesResponse, error) {
	return &entryv1.GetAuthorizedEntriesResponse{Entries: []*types.Entry{{Id: caller(ctx)}}}, nil
}

func (whoami) GetBundle(ctx context.Context, _ *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	return &types.Bundle{TrustDomain: caller(ctx)}, nil
}

type tcpFixture struct {
	ca    *ca.CA
	store *datastore.Store
	addr  string
	roots *x509.CertPool
	mu    sync.Mutex
	node  *datastore.AttestedNode
}

func svidFor(t *testing.T, c *ca.CA, id spiffeid.ID) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := c.SignX509SVID(context.Background(), ca.X509SVIDParams{SPIFFEID: id, PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

func rootsOf(t *testing.T, store *datastore.Store, td spiffeid.TrustDomain) []*x509.Certificate {
	b, err := store.FetchBundle(context.Background(), td.IDString())
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for _, a := range b.X509Authorities {
		c, err := x509.ParseCertificate(a.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func startTCP(t *testing.T, adminIDs ...spiffeid.ID) *tcpFixture {
	t.Helper()
	ctx := context.Background()
	f := &tcpFixture{store: datastoretest.OpenSQLite(t)}
	f.ca = apitest.NewCA(t, td, f.store, nil)
	st, err := endpoints.NewServerTLS(ctx, endpoints.ServerTLSConfig{
		TrustDomain: td,
		Sign: func(ctx context.Context, id spiffeid.ID, key crypto.PublicKey) ([]*x509.Certificate, error) {
			return f.ca.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: id, PublicKey: key})
		},
		ActiveAuthority: func() string { return f.ca.X509Authorities().Active.AuthorityID },
		Roots: func(ctx context.Context, td spiffeid.TrustDomain) ([]*x509.Certificate, error) {
			return rootsOf(t, f.store, td), nil
		},
		AdminIDs: adminIDs,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.roots = x509.NewCertPool()
	for _, r := range rootsOf(t, f.store, td) {
		f.roots.AddCert(r)
	}
	e, err := endpoints.New(endpoints.Config{
		SocketPath: filepath.Join(tempDir(t), "api.sock"),
		TCP:        &endpoints.TCPConfig{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, TLS: st.TLSConfig()},
		Services:   []endpoints.Service{whoami{}},
		Facts: authz.Facts{
			AdminIDs: adminIDs,
			Agent: func(_ context.Context, id spiffeid.ID, cert *x509.Certificate) error {
				f.mu.Lock()
				defer f.mu.Unlock()
				var node *datastore.AttestedNode
				if f.node != nil && f.node.SPIFFEID == id.String() {
					node = f.node
				}
				_, err := authz.CheckAgent(time.Now(), node, cert)
				return err
			},
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	<-e.Ready()
	f.addr = e.TCPAddr().String()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return f
}

func (f *tcpFixture) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{
		RootCAs:    f.roots,
		ServerName: "ignored",
		MinVersion: tls.VersionTLS12,
		// The server SVID has a URI SAN only: check it like go-spiffe does.
		InsecureSkipVerify: true, //nolint:gosec // verified below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/spire/server" {
				return status.Error(codes.Unauthenticated, "not the server")
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: f.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		},
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func foreignSVID(t *testing.T, id string, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rogue"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	caCert, _ := x509.ParseCertificate(caDER)
	u, _ := url.Parse(id)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &leafKey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: leafKey}
}

func TestTCP_T13_Authorization(t *testing.T) {
	ctx := context.Background()
	adminID := spiffeid.RequireFromPath(td, "/admin")
	f := startTCP(t, adminID)
	agentID := spiffeid.RequireFromPath(td, "/spire/agent/join_token/abc")
	agentCert := svidFor(t, f.ca, agentID)
	f.node = &datastore.AttestedNode{SPIFFEID: agentID.String(), CertSerialNumber: agentCert.Leaf.SerialNumber.String()}
	adminCert := svidFor(t, f.ca, adminID)
	workloadCert := svidFor(t, f.ca, spiffeid.RequireFromPath(td, "/workload"))

	t.Run("ok/no certificate may get the bundle", func(t *testing.T) {
		b, err := bundlev1.NewBundleClient(f.dial(t, nil)).GetBundle(ctx, &bundlev1.GetBundleRequest{})
		if err != nil || b.TrustDomain != "nobody " {
			t.Fatalf("%v %v", b, err)
		}
	})
	t.Run("fail/no certificate on an admin RPC", func(t *testing.T) {
		_, err := entryv1.NewEntryClient(f.dial(t, nil)).ListEntries(ctx, &entryv1.ListEntriesRequest{})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "authorization denied for method /spire.api.server.entry.v1.Entry/ListEntries") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ok/admin ID", func(t *testing.T) {
		r, err := entryv1.NewEntryClient(f.dial(t, &adminCert)).ListEntries(ctx, &entryv1.ListEntriesRequest{})
		if err != nil || r.NextPageToken != "admin spiffe://example.org/admin" {
			t.Fatalf("%v %v", r, err)
		}
	})
	t.Run("fail/workload on an admin RPC", func(t *testing.T) {
		_, err := entryv1.NewEntryClient(f.dial(t, &workloadCert)).ListEntries(ctx, &entryv1.ListEntriesRequest{})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ok/agent on an agent RPC", func(t *testing.T) {
		r, err := entryv1.NewEntryClient(f.dial(t, &agentCert)).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
		if err != nil || r.Entries[0].Id != "agent "+agentID.String() {
			t.Fatalf("%v %v", r, err)
		}
	})
	t.Run("fail/T3 agent with a stale SVID", func(t *testing.T) {
		stale := svidFor(t, f.ca, agentID)
		_, err := entryv1.NewEntryClient(f.dial(t, &stale)).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "expected to have serial number") {
			t.Fatalf("err = %v", err)
		}
		if d := status.Convert(err).Details(); len(d) != 1 || d[0].(*types.PermissionDeniedDetails).Reason != types.PermissionDeniedDetails_AGENT_NOT_ACTIVE {
			t.Fatalf("details %v", d)
		}
	})
	t.Run("fail/T14 oversized CSR batch", func(t *testing.T) {
		params := make([]*svidv1.NewX509SVIDParams, endpoints.SignLimitPerIP+1)
		for i := range params {
			params[i] = &svidv1.NewX509SVIDParams{EntryId: "e"}
		}
		_, err := svidv1.NewSVIDClient(f.dial(t, &agentCert)).BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{Params: params})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/T13 health is not served on TCP", func(t *testing.T) {
		_, err := grpc_health_v1.NewHealthClient(f.dial(t, &adminCert)).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/agent on an admin RPC", func(t *testing.T) {
		_, err := entryv1.NewEntryClient(f.dial(t, &agentCert)).ListEntries(ctx, &entryv1.ListEntriesRequest{})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/T10 certificate from another CA", func(t *testing.T) {
		rogue := foreignSVID(t, "spiffe://example.org/admin", time.Now().Add(time.Hour))
		_, err := entryv1.NewEntryClient(f.dial(t, &rogue)).ListEntries(ctx, &entryv1.ListEntriesRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("err = %v, want a failed handshake", err)
		}
	})
	t.Run("fail/T10 another trust domain without admin_ids", func(t *testing.T) {
		rogue := foreignSVID(t, "spiffe://other.example/admin", time.Now().Add(time.Hour))
		_, err := entryv1.NewEntryClient(f.dial(t, &rogue)).ListEntries(ctx, &entryv1.ListEntriesRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("err = %v, want a failed handshake", err)
		}
	})
}

// T10: no TLS session resumption, so every connection is verified against
// the current bundle.
func TestTCP_T10_NoSessionResumption(t *testing.T) {
	f := startTCP(t)
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		conn, err := tls.Dial("tcp", f.addr, &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // only resumption is tested
			ClientSessionCache: cache,
			NextProtos:         []string{"h2"},
			MinVersion:         tls.VersionTLS12,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Handshake(); err != nil {
			t.Fatal(err)
		}
		if conn.ConnectionState().DidResume {
			t.Fatalf("connection %d resumed a session", i)
		}
		_ = conn.Close()
	}
}

func TestShouldRotate(t *testing.T) {
	now := time.Unix(1000, 0)
	leaf := &x509.Certificate{NotBefore: now.Add(-10 * time.Minute), NotAfter: now.Add(30 * time.Minute)}
	if endpoints.ShouldRotate(now, leaf, "a", "a") {
		t.Fatal("rotated before half life")
	}
	if !endpoints.ShouldRotate(now.Add(11*time.Minute), leaf, "a", "a") {
		t.Fatal("not rotated after half life")
	}
	if !endpoints.ShouldRotate(now, leaf, "a", "b") {
		t.Fatal("not rotated after a CA change")
	}
	if !endpoints.ShouldRotate(now, nil, "a", "a") {
		t.Fatal("no SVID must rotate")
	}
}

// The rotation loop re-signs at half life and after a CA change (T3 loop in a bubble).
func TestServerTLS_Run(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		signed, authority := 0, "a"
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte{0xa}}
		st, err := endpoints.NewServerTLS(context.Background(), endpoints.ServerTLSConfig{
			TrustDomain: td,
			Sign: func(_ context.Context, id spiffeid.ID, pub crypto.PublicKey) ([]*x509.Certificate, error) {
				mu.Lock()
				signed++
				mu.Unlock()
				u, _ := url.Parse(id.String())
				tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{u}}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, pub, key)
				if err != nil {
					return nil, err
				}
				c, err := x509.ParseCertificate(der)
				return []*x509.Certificate{c}, err
			},
			ActiveAuthority: func() string { mu.Lock(); defer mu.Unlock(); return authority },
			Roots:           func(context.Context, spiffeid.TrustDomain) ([]*x509.Certificate, error) { return nil, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- st.Run(ctx) }()
		count := func() int { mu.Lock(); defer mu.Unlock(); return signed }

		time.Sleep(20 * time.Minute)
		synctest.Wait()
		if n := count(); n != 1 {
			t.Fatalf("%d signatures before half life", n)
		}
		time.Sleep(11 * time.Minute)
		synctest.Wait()
		if n := count(); n != 2 {
			t.Fatalf("%d signatures after half life", n)
		}
		mu.Lock()
		authority = "b"
		mu.Unlock()
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if n := count(); n != 3 {
			t.Fatalf("%d signatures after a CA change", n)
		}
		if uris := st.Certificate().Leaf.URIs; len(uris) != 1 || uris[0].String() != "spiffe://example.org/spire/server" {
			t.Fatalf("server SVID ID %v", uris)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
