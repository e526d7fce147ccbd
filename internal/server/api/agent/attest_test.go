package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/api/agent"
	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
	"github.com/neural-hive/hive-identity/internal/server/nodeattest"
)

var _ agent.CA = (*ca.CA)(nil)

type attestFixture struct {
	store   *datastore.Store
	ca      *ca.CA
	svc     *agent.Service
	client  agentv1.AgentClient
	changed int
	mu      sync.Mutex
}

func setupAttest(t *testing.T) *attestFixture {
	t.Helper()
	f := &attestFixture{store: datastoretest.OpenSQLite(t)}
	f.ca = apitest.NewCA(t, td, f.store, nil)
	svc, err := agent.New(agent.Config{
		TrustDomain: td, Store: f.store, CA: f.ca, AgentSVIDTTL: time.Hour,
		NodeAttestors: map[string]nodeattest.Attestor{"join_token": &nodeattest.JoinToken{TD: td, Store: f.store}},
		Changed: func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.changed++
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	f.client = agentv1.NewAgentClient(apitest.Serve(t, svc).Conn)
	return f
}

func newCSR(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (f *attestFixture) attest(t *testing.T, typ, payload string, csr []byte) (*agentv1.AttestAgentResponse, error) {
	t.Helper()
	stream, err := f.client.AttestAgent(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: typ, Payload: []byte(payload)},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		return nil, err
	}
	return stream.Recv()
}

func (f *attestFixture) token(t *testing.T, token string, ttl int32) {
	t.Helper()
	if _, err := f.client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: ttl, Token: token}); err != nil {
		t.Fatal(err)
	}
}

func TestAttestAgent(t *testing.T) {
	for _, tt := range []struct {
		name    string
		setup   func(*testing.T, *attestFixture)
		typ     string
		payload string
		csr     func(*testing.T) []byte
		code    codes.Code
		msg     string
	}{
		{name: "ok/join token", setup: func(t *testing.T, f *attestFixture) { f.token(t, "tok", 600) }, typ: "join_token", payload: "tok"},
		{name: "fail/T4 unknown token", typ: "join_token", payload: "nope",
			code: codes.InvalidArgument, msg: "failed to attest: join token does not exist or has already been used"},
		{name: "fail/T4 expired token", setup: func(t *testing.T, f *attestFixture) {
			if err := f.store.CreateJoinToken(ctx, &datastore.JoinToken{Token: "old", ExpiresAt: time.Now().Add(-time.Minute).Unix()}); err != nil {
				t.Fatal(err)
			}
		}, typ: "join_token", payload: "old", code: codes.InvalidArgument, msg: "join token expired"},
		{name: "fail/T5 token that is not a path segment", typ: "join_token", payload: "../../spire/server",
			code: codes.InvalidArgument, msg: "failed to attest: join token does not exist or has already been used"},
		{name: "fail/unknown attestor", typ: "aws_iid", payload: "x",
			code: codes.FailedPrecondition, msg: `error getting node attestor: could not find node attestor type "aws_iid"`},
		{name: "fail/missing payload", typ: "join_token", payload: "", code: codes.InvalidArgument, msg: "malformed param: missing attestation data payload"},
		{name: "fail/missing CSR", setup: func(t *testing.T, f *attestFixture) { f.token(t, "tok", 600) }, typ: "join_token", payload: "tok",
			csr: func(*testing.T) []byte { return nil }, code: codes.InvalidArgument, msg: "malformed param: missing CSR"},
		{name: "fail/malformed CSR", setup: func(t *testing.T, f *attestFixture) { f.token(t, "tok", 600) }, typ: "join_token", payload: "tok",
			csr: func(*testing.T) []byte { return []byte("junk") }, code: codes.InvalidArgument, msg: "failed to parse CSR: "},
		{name: "fail/banned agent", setup: func(t *testing.T, f *attestFixture) {
			f.token(t, "tok", 600)
			if _, err := f.store.CreateAttestedNode(ctx, &datastore.AttestedNode{SPIFFEID: "spiffe://example.org/spire/agent/join_token/tok", AttestationType: "join_token"}); err != nil {
				t.Fatal(err)
			}
		}, typ: "join_token", payload: "tok", code: codes.PermissionDenied, msg: "failed to attest: agent is banned"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setupAttest(t)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			before, _, _ := f.store.ListAttestedNodes(ctx, &datastore.ListAttestedNodesRequest{})
			csr := newCSR(t)
			if tt.csr != nil {
				csr = tt.csr(t)
			}
			resp, err := f.attest(t, tt.typ, tt.payload, csr)
			if tt.code != codes.OK {
				if status.Code(err) != tt.code || !strings.HasPrefix(status.Convert(err).Message(), tt.msg) {
					t.Fatalf("err = %v, want %v %q", err, tt.code, tt.msg)
				}
				after, _, _ := f.store.ListAttestedNodes(ctx, &datastore.ListAttestedNodesRequest{})
				if len(after) != len(before) || (len(after) == 1 && after[0].CertSerialNumber != "") {
					t.Fatalf("attested nodes changed: %v -> %v", before, after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			svid := resp.GetResult().GetSvid()
			leaf, err := x509.ParseCertificate(svid.GetCertChain()[0])
			if err != nil {
				t.Fatal(err)
			}
			const wantID = "spiffe://example.org/spire/agent/join_token/tok"
			if leaf.URIs[0].String() != wantID || svid.Id.Path != "/spire/agent/join_token/tok" || svid.ExpiresAt != leaf.NotAfter.Unix() {
				t.Fatalf("agent SVID %v %v", leaf.URIs, svid)
			}
			node, err := f.store.FetchAttestedNode(ctx, wantID)
			if err != nil || node.CertSerialNumber != leaf.SerialNumber.String() || node.AttestationType != "join_token" || node.CertNotAfter != leaf.NotAfter.Unix() {
				t.Fatalf("node %+v %v", node, err)
			}
			if f.changed == 0 {
				t.Fatal("index not poked after an attestation")
			}
			// T4: the token is single use.
			_, err = f.attest(t, "join_token", "tok", newCSR(t))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("token reuse: %v", err)
			}
		})
	}
}

// T4: of many concurrent attestations with one token, exactly one wins.
func TestAttestAgent_T4_ConcurrentTokenUse(t *testing.T) {
	f := setupAttest(t)
	f.token(t, "race", 600)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, refusals := 0, 0
	for range 10 {
		wg.Go(func() {
			_, err := f.attest(t, "join_token", "race", newCSR(t))
			mu.Lock()
			defer mu.Unlock()
			switch status.Code(err) {
			case codes.OK:
				wins++
			case codes.InvalidArgument:
				refusals++
			default:
				t.Errorf("unexpected %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || refusals != 9 {
		t.Fatalf("%d wins, %d refusals", wins, refusals)
	}
}

func TestRenewAgent(t *testing.T) {
	f := setupAttest(t)
	f.token(t, "tok", 600)
	resp, err := f.attest(t, "join_token", "tok", newCSR(t))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := x509.ParseCertificate(resp.GetResult().GetSvid().GetCertChain()[0])
	agentCaller := authz.Caller{ID: td.ID(), Role: authz.RoleAgent}
	agentCaller.ID, _ = api.IDFromProto(resp.GetResult().GetSvid().GetId())
	cctx := api.WithCaller(ctx, agentCaller)

	r, err := f.svc.RenewAgent(cctx, &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: newCSR(t)}})
	if err != nil {
		t.Fatal(err)
	}
	renewed, _ := x509.ParseCertificate(r.Svid.CertChain[0])
	node, _ := f.store.FetchAttestedNode(ctx, agentCaller.ID.String())
	if node.CertSerialNumber != old.SerialNumber.String() || node.NewCertSerialNumber != renewed.SerialNumber.String() {
		t.Fatalf("node after renewal %+v", node)
	}
	// The old SVID still works until the new one is used, then it does not (T3).
	if _, err := authz.CheckAgent(time.Now(), node, old); err != nil {
		t.Fatalf("old SVID refused before switch: %v", err)
	}
	if promote, err := authz.CheckAgent(time.Now(), node, renewed); err != nil || !promote {
		t.Fatalf("new SVID: %v %v", promote, err)
	}

	for _, tt := range []struct {
		name string
		ctx  context.Context
		req  *agentv1.RenewAgentRequest
		code codes.Code
		msg  string
	}{
		{name: "fail/no params", ctx: cctx, req: &agentv1.RenewAgentRequest{}, code: codes.InvalidArgument, msg: "params cannot be nil"},
		{name: "fail/no CSR", ctx: cctx, req: &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{}}, code: codes.InvalidArgument, msg: "missing CSR"},
		{name: "fail/evicted agent", ctx: api.WithCaller(ctx, authz.Caller{ID: td.ID(), Role: authz.RoleAgent}), req: &agentv1.RenewAgentRequest{}, code: codes.NotFound, msg: "agent not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.RenewAgent(tt.ctx, tt.req)
			if status.Code(err) != tt.code || status.Convert(err).Message() != tt.msg {
				t.Fatalf("err = %v", err)
			}
		})
	}

	if _, err := f.store.UpdateAttestedNode(ctx, &datastore.AttestedNode{SPIFFEID: agentCaller.ID.String(), CanReattest: true}, &datastore.AttestedNodeMask{CanReattest: true}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.RenewAgent(cctx, &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: newCSR(t)}})
	if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != "agent must reattest instead of renew" {
		t.Fatalf("reattestable agent: %v", err)
	}
	if d := status.Convert(err).Details(); len(d) != 1 || d[0].(*types.PermissionDeniedDetails).Reason != types.PermissionDeniedDetails_AGENT_MUST_REATTEST {
		t.Fatalf("details %v", d)
	}
}
