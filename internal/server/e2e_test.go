package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/push"
	"github.com/neural-hive/hive-identity/internal/server"
)

type agentSide struct {
	t      *testing.T
	addr   string
	bundle *x509bundle.Bundle
}

func (a *agentSide) dial(svid *x509svid.SVID) *grpc.ClientConn {
	a.t.Helper()
	serverID := spiffeid.RequireFromPath(td, "/spire/server")
	var cfg = tlsconfig.TLSClientConfig(a.bundle, tlsconfig.AuthorizeID(serverID))
	if svid != nil {
		cfg = tlsconfig.MTLSClientConfig(svid, a.bundle, tlsconfig.AuthorizeID(serverID))
	}
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func keyAndCSR(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

func toSVID(t *testing.T, key *ecdsa.PrivateKey, s *types.X509SVID) *x509svid.SVID {
	t.Helper()
	var certs []*x509.Certificate
	for _, raw := range s.CertChain {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}
}

// The agent<->server protocol end to end over the real TCP endpoint: join
// token with an alias, attestation, push, sync, batch signing, renewal, ban.
func TestServer_AgentProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := tempDir(t)
	s, err := server.New(server.Config{
		TrustDomain:   td,
		DataDir:       filepath.Join(dir, "data"),
		SocketPath:    filepath.Join(dir, "s", "api.sock"),
		BindAddress:   &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
		NodeAttestors: map[string]map[string]any{"join_token": {}},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	admin, _ := grpcUnix(t, filepath.Join(dir, "s", "api.sock"))

	// Admin: a join token whose agent gets the alias spiffe://example.org/node/agent-1,
	// and a workload entry under that alias.
	tok, err := agentv1.NewAgentClient(admin).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{
		Ttl: 600, AgentId: &types.SPIFFEID{TrustDomain: "example.org", Path: "/node/agent-1"}})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := entryv1.NewEntryClient(admin).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/workload/web"},
		ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/node/agent-1"},
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:1000"}},
		DnsNames:  []string{"web.example.org"},
	}}})
	if err != nil || cr.Results[0].Status.Code != 0 {
		t.Fatalf("create entry: %v %v", cr, err)
	}
	entryID := cr.Results[0].Entry.Id

	b, err := bundlev1.NewBundleClient(admin).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var roots []*x509.Certificate
	for _, a := range b.X509Authorities {
		c, _ := x509.ParseCertificate(a.Asn1)
		roots = append(roots, c)
	}
	a := &agentSide{t: t, addr: s.TCPAddr().String(), bundle: x509bundle.FromX509Authorities(td, roots)}

	// Attest over TLS without a client certificate.
	key, csr := keyAndCSR(t)
	stream, err := agentv1.NewAgentClient(a.dial(nil)).AttestAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data: &types.AttestationData{Type: "join_token", Payload: []byte(tok.Value)}, Params: &agentv1.AgentX509SVIDParams{Csr: csr}}}}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	agentSVID := toSVID(t, key, res.GetResult().GetSvid())
	if agentSVID.ID.String() != "spiffe://example.org/spire/agent/join_token/"+tok.Value {
		t.Fatalf("agent ID %v", agentSVID.ID)
	}
	conn := a.dial(agentSVID)

	// Push, then sync until the workload entry (authorized through the alias) shows.
	revs := make(chan int64, 16)
	watchErr := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() { watchErr <- push.Watch(watchCtx, conn, func(r int64) { revs <- r }) }()
	found := false
	for !found {
		select {
		case <-revs:
		case err := <-watchErr:
			t.Fatalf("watch ended: %v", err)
		case <-ctx.Done():
			t.Fatal("the entry never reached the agent")
		}
		ss, err := entryv1.NewEntryClient(conn).SyncAuthorizedEntries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ss.Send(&entryv1.SyncAuthorizedEntriesRequest{}); err != nil {
			t.Fatal(err)
		}
		resp, err := ss.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entries {
			found = found || e.Id == entryID
		}
	}

	// Batch signing for the authorized entry.
	_, wcsr := keyAndCSR(t)
	br, err := svidv1.NewSVIDClient(conn).BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{{EntryId: entryID, Csr: wcsr}}})
	if err != nil || br.Results[0].Status.Code != 0 {
		t.Fatalf("batch: %v %v", br, err)
	}
	leaf, _ := x509.ParseCertificate(br.Results[0].Svid.CertChain[0])
	if leaf.URIs[0].String() != "spiffe://example.org/workload/web" || leaf.DNSNames[0] != "web.example.org" {
		t.Fatalf("workload SVID %v %v", leaf.URIs, leaf.DNSNames)
	}

	// Renewal: the new SVID works, and once used the old one is refused (T3).
	key2, csr2 := keyAndCSR(t)
	rr, err := agentv1.NewAgentClient(conn).RenewAgent(ctx, &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr2}})
	if err != nil {
		t.Fatal(err)
	}
	renewed := a.dial(toSVID(t, key2, rr.Svid))
	if _, err := entryv1.NewEntryClient(renewed).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{}); err != nil {
		t.Fatalf("renewed SVID: %v", err)
	}
	_, err = entryv1.NewEntryClient(a.dial(agentSVID)).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("old SVID after the switch: %v", err)
	}

	// Ban: the agent is refused at once and its push stream ends (T3).
	if _, err := agentv1.NewAgentClient(admin).BanAgent(ctx, &agentv1.BanAgentRequest{Id: &types.SPIFFEID{TrustDomain: "example.org", Path: agentSVID.ID.Path()}}); err != nil {
		t.Fatal(err)
	}
	_, err = entryv1.NewEntryClient(renewed).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("banned agent: %v", err)
	}
	if d := status.Convert(err).Details(); len(d) != 1 || d[0].(*types.PermissionDeniedDetails).Reason != types.PermissionDeniedDetails_AGENT_BANNED {
		t.Fatalf("details %v", d)
	}
	select {
	case err := <-watchErr:
		if status.Code(err) != codes.PermissionDenied && !errors.Is(err, context.Canceled) {
			t.Fatalf("watch after ban: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("push stream survived the ban")
	}
}
