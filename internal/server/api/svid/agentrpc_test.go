package svid_test

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/api/svid"
	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
	"github.com/neural-hive/hive-identity/internal/server/index"
)

var _ svid.Entries = (*index.Index)(nil)

const (
	agentA = "spiffe://example.org/spire/agent/join_token/a"
	agentB = "spiffe://example.org/spire/agent/join_token/b"
)

func agentSetup(t *testing.T) *svid.Service {
	t.Helper()
	store := datastoretest.OpenSQLite(t)
	idx := index.New("spiffe://example.org/spire/server")
	idx.Load([]*datastore.Entry{
		{ID: "mine", SPIFFEID: "spiffe://example.org/workload/mine", ParentID: agentA, X509SVIDTTL: 120, JWTSVIDTTL: 90,
			DNSNames: []string{"mine.example.org"}, Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1"}}},
		{ID: "theirs", SPIFFEID: "spiffe://example.org/workload/theirs", ParentID: agentB, Selectors: []datastore.Selector{{Type: "unix", Value: "uid:2"}}},
	}, nil, 1)
	svc, err := svid.New(svid.Config{TrustDomain: td, CA: apitest.NewCA(t, td, store, nil), Entries: idx})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestBatchNewX509SVID(t *testing.T) {
	svc := agentSetup(t)
	actx := api.WithCaller(ctx, authz.Caller{ID: spiffeid.RequireFromString(agentA), Role: authz.RoleAgent})
	key := newKey(t)
	good := csr(t, key, nil)
	// T1: a SAN in the CSR is ignored; the entry decides the ID.
	forged := csr(t, key, func(r *x509.CertificateRequest) {
		u, _ := url.Parse("spiffe://example.org/workload/theirs")
		r.URIs = []*url.URL{u}
		r.DNSNames = []string{"evil.example.org"}
	})
	bad := csr(t, key, nil)
	bad[len(bad)-3] ^= 0xff
	resp, err := svc.BatchNewX509SVID(actx, &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{
		{EntryId: "mine", Csr: good},
		{EntryId: "mine", Csr: forged},
		{EntryId: "theirs", Csr: good},
		{EntryId: "nope", Csr: good},
		{Csr: good},
		{EntryId: "mine"},
		{EntryId: "mine", Csr: []byte("junk")},
		{EntryId: "mine", Csr: bad},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		code codes.Code
		msg  string
	}{
		{codes.OK, "OK"}, {codes.OK, "OK"},
		{codes.NotFound, "entry not found or not authorized"}, // T2
		{codes.NotFound, "entry not found or not authorized"},
		{codes.InvalidArgument, "missing entry ID"},
		{codes.InvalidArgument, "missing CSR"},
		{codes.InvalidArgument, "malformed CSR: "},
		{codes.InvalidArgument, "invalid CSR signature: "},
	}
	for i, r := range resp.Results {
		if codes.Code(r.Status.Code) != want[i].code || !strings.HasPrefix(r.Status.Message, want[i].msg) {
			t.Errorf("result %d: %v, want %v %q", i, r.Status, want[i].code, want[i].msg)
		}
	}
	for _, r := range resp.Results[:2] {
		leaf, err := x509.ParseCertificate(r.Svid.CertChain[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/workload/mine" ||
			strings.Join(leaf.DNSNames, ",") != "mine.example.org" || leaf.NotAfter.Sub(leaf.NotBefore) > 131*time.Second {
			t.Fatalf("SVID not from the entry: %v %v %v", leaf.URIs, leaf.DNSNames, leaf.NotAfter.Sub(leaf.NotBefore))
		}
	}

	_, err = svc.BatchNewX509SVID(actx, &svidv1.BatchNewX509SVIDRequest{})
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "missing parameters" {
		t.Fatalf("empty batch: %v", err)
	}
}

func TestNewJWTSVID(t *testing.T) {
	svc := agentSetup(t)
	actx := api.WithCaller(ctx, authz.Caller{ID: spiffeid.RequireFromString(agentA), Role: authz.RoleAgent})
	resp, err := svc.NewJWTSVID(actx, &svidv1.NewJWTSVIDRequest{EntryId: "mine", Audience: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(resp.Svid.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatal(err)
	}
	if c.Subject != "spiffe://example.org/workload/mine" || resp.Svid.ExpiresAt-resp.Svid.IssuedAt != 90 {
		t.Fatalf("claims %+v svid %v", c, resp.Svid)
	}
	for _, tt := range []struct {
		name string
		req  *svidv1.NewJWTSVIDRequest
		code codes.Code
		msg  string
	}{
		{name: "fail/T2 entry of another agent", req: &svidv1.NewJWTSVIDRequest{EntryId: "theirs", Audience: []string{"db"}}, code: codes.NotFound, msg: "entry not found or not authorized"},
		{name: "fail/no audience", req: &svidv1.NewJWTSVIDRequest{EntryId: "mine"}, code: codes.InvalidArgument, msg: "at least one audience is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.NewJWTSVID(actx, tt.req)
			if status.Code(err) != tt.code || status.Convert(err).Message() != tt.msg {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
