package agent_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/neural-hive/hive-identity/internal/server/api/agent"
	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	ctx = context.Background()
	now = time.Unix(1800000000, 0)

	_ agent.Store = (*datastore.Store)(nil)
)

type fixture struct {
	store   *datastore.Store
	client  agentv1.AgentClient
	srv     *apitest.Server
	mu      sync.Mutex
	removed []string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: datastoretest.OpenSQLite(t)}
	svc, err := agent.New(agent.Config{TrustDomain: td, Store: f.store, Clock: func() time.Time { return now },
		AgentRemoved: func(id string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.removed = append(f.removed, id)
		}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = apitest.Serve(t, svc)
	f.client = agentv1.NewAgentClient(f.srv.Conn)
	return f
}

func agentPath(name string) string { return "/spire/agent/join_token/" + name }

func (f *fixture) addNode(t *testing.T, name, typ, serial string, notAfter int64, reattest bool, sels ...datastore.Selector) {
	t.Helper()
	id := "spiffe://example.org" + agentPath(name)
	if _, err := f.store.CreateAttestedNode(ctx, &datastore.AttestedNode{SPIFFEID: id, AttestationType: typ,
		CertSerialNumber: serial, CertNotAfter: notAfter, CanReattest: reattest}); err != nil {
		t.Fatal(err)
	}
	if len(sels) > 0 {
		if err := f.store.SetNodeSelectors(ctx, id, sels); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) nodes(t *testing.T) map[string]datastore.AttestedNode {
	t.Helper()
	ns, _, err := f.store.ListAttestedNodes(ctx, &datastore.ListAttestedNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]datastore.AttestedNode{}
	for _, n := range ns {
		out[n.SPIFFEID] = *n
	}
	return out
}

func sameNodes(t *testing.T, before, after map[string]datastore.AttestedNode) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("agents changed: %d -> %d", len(before), len(after))
	}
	for k, v := range before {
		if a := after[k]; a.CertSerialNumber != v.CertSerialNumber || a.NewCertSerialNumber != v.NewCertSerialNumber {
			t.Fatalf("agent %s changed: %+v -> %+v", k, v, a)
		}
	}
}

func checkErr(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || (code != codes.OK && !strings.HasPrefix(status.Convert(err).Message(), msg)) {
		t.Fatalf("err = %v, want %v %q", err, code, msg)
	}
}

func sid(path string) *types.SPIFFEID { return &types.SPIFFEID{TrustDomain: "example.org", Path: path} }

func seed(t *testing.T, f *fixture) {
	f.addNode(t, "a", "join_token", "1", 1000, false, datastore.Selector{Type: "k8s_psat", Value: "cluster:a"})
	f.addNode(t, "b", "x509pop", "2", 5000, true, datastore.Selector{Type: "k8s_psat", Value: "cluster:a"}, datastore.Selector{Type: "x509pop", Value: "cn:b"})
	f.addNode(t, "c", "x509pop", "", 9000, false) // banned
}

func TestListAndCountAgents(t *testing.T) {
	f := setup(t)
	seed(t, f)
	match := func(m types.SelectorMatch_MatchBehavior, sels ...*types.Selector) *types.SelectorMatch {
		return &types.SelectorMatch{Match: m, Selectors: sels}
	}
	for _, tt := range []struct {
		name   string
		filter *agentv1.ListAgentsRequest_Filter
		want   []string
		code   codes.Code
		msg    string
	}{
		{name: "ok/all", want: []string{"a", "b", "c"}},
		{name: "ok/by attestation type", filter: &agentv1.ListAgentsRequest_Filter{ByAttestationType: "x509pop"}, want: []string{"b", "c"}},
		{name: "ok/banned", filter: &agentv1.ListAgentsRequest_Filter{ByBanned: wrapperspb.Bool(true)}, want: []string{"c"}},
		{name: "ok/not banned", filter: &agentv1.ListAgentsRequest_Filter{ByBanned: wrapperspb.Bool(false)}, want: []string{"a", "b"}},
		{name: "ok/can reattest", filter: &agentv1.ListAgentsRequest_Filter{ByCanReattest: wrapperspb.Bool(true)}, want: []string{"b"}},
		{name: "ok/expires before", filter: &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: time.Unix(6000, 0).UTC().Format("2006-01-02 15:04:05 -0700 -07")}, want: []string{"a", "b"}},
		{name: "ok/unparsable expires before is no filter", filter: &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: "yesterday"}, want: []string{"a", "b", "c"}},
		{name: "ok/selector superset", filter: &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_SUPERSET, &types.Selector{Type: "k8s_psat", Value: "cluster:a"})}, want: []string{"a", "b"}},
		{name: "ok/selector exact", filter: &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_EXACT, &types.Selector{Type: "k8s_psat", Value: "cluster:a"})}, want: []string{"a"}},
		{name: "fail/selector without value", filter: &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_ANY, &types.Selector{Type: "k8s_psat"})},
			code: codes.InvalidArgument, msg: "failed to parse selectors: missing selector value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.client.ListAgents(ctx, &agentv1.ListAgentsRequest{Filter: tt.filter})
			checkErr(t, err, tt.code, tt.msg)
			if tt.code != codes.OK {
				return
			}
			var got []string
			for _, a := range resp.Agents {
				got = append(got, strings.TrimPrefix(a.Id.Path, "/spire/agent/join_token/"))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			var cf *agentv1.CountAgentsRequest_Filter
			if tt.filter != nil {
				cf = &agentv1.CountAgentsRequest_Filter{ByAttestationType: tt.filter.ByAttestationType, ByBanned: tt.filter.ByBanned,
					ByCanReattest: tt.filter.ByCanReattest, ByExpiresBefore: tt.filter.ByExpiresBefore, BySelectorMatch: tt.filter.BySelectorMatch}
			}
			n, err := f.client.CountAgents(ctx, &agentv1.CountAgentsRequest{Filter: cf})
			if err != nil || int(n.Count) != len(tt.want) {
				t.Fatalf("count %v %v, want %d", n, err, len(tt.want))
			}
		})
	}

	t.Run("ok/fields, selectors and mask", func(t *testing.T) {
		resp, err := f.client.ListAgents(ctx, &agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByAttestationType: "join_token"}})
		if err != nil {
			t.Fatal(err)
		}
		a := resp.Agents[0]
		if a.AttestationType != "join_token" || a.X509SvidSerialNumber != "1" || a.X509SvidExpiresAt != 1000 || a.Banned || len(a.Selectors) != 1 {
			t.Fatalf("agent %v", a)
		}
		resp, err = f.client.ListAgents(ctx, &agentv1.ListAgentsRequest{OutputMask: &types.AgentMask{Banned: true}, PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Agents) != 2 || resp.NextPageToken == "" || resp.Agents[0].Selectors != nil || resp.Agents[0].AttestationType != "" {
			t.Fatalf("page %v", resp)
		}
		resp, err = f.client.ListAgents(ctx, &agentv1.ListAgentsRequest{OutputMask: &types.AgentMask{Banned: true}, PageSize: 2, PageToken: resp.NextPageToken})
		if err != nil || len(resp.Agents) != 1 || !resp.Agents[0].Banned {
			t.Fatalf("second page %v %v", resp, err)
		}
	})
}

func TestGetDeleteBanAgent(t *testing.T) {
	for _, tt := range []struct {
		name    string
		call    func(agentv1.AgentClient, *types.SPIFFEID) error
		id      *types.SPIFFEID
		code    codes.Code
		msg     string
		changed func(*testing.T, map[string]datastore.AttestedNode)
	}{
		{name: "ok/get", call: get, id: sid(agentPath("a"))},
		{name: "fail/get unknown", call: get, id: sid(agentPath("no-such-token")), code: codes.NotFound, msg: "agent not found"},
		{name: "fail/get non agent ID", call: get, id: sid("/node/a"), code: codes.InvalidArgument,
			msg: `invalid agent ID: "spiffe://example.org/node/a" is not an agent in trust domain "example.org"; path is not in the agent namespace`},
		{name: "fail/get agent of another trust domain", call: get, id: &types.SPIFFEID{TrustDomain: "other.example", Path: agentPath("a")}, code: codes.InvalidArgument,
			msg: `invalid agent ID: "spiffe://other.example/spire/agent/join_token/a" is not a member of trust domain "example.org"`},
		{name: "fail/get malformed ID", call: get, id: sid("/spire/agent//a"), code: codes.InvalidArgument, msg: "invalid agent ID: path cannot contain empty segments"},
		{name: "ok/delete", call: del, id: sid(agentPath("a")), changed: func(t *testing.T, n map[string]datastore.AttestedNode) {
			if _, ok := n["spiffe://example.org"+agentPath("a")]; ok || len(n) != 2 {
				t.Fatalf("not evicted: %v", n)
			}
		}},
		{name: "fail/delete unknown", call: del, id: sid(agentPath("no-such-token")), code: codes.NotFound, msg: "agent not found"},
		{name: "ok/ban", call: ban, id: sid(agentPath("a")), changed: func(t *testing.T, n map[string]datastore.AttestedNode) {
			a := n["spiffe://example.org"+agentPath("a")]
			if a.CertSerialNumber != "" || a.NewCertSerialNumber != "" || !a.Banned() {
				t.Fatalf("not banned: %+v", a)
			}
		}},
		{name: "fail/ban unknown", call: ban, id: sid(agentPath("no-such-token")), code: codes.NotFound, msg: "agent not found"},
		{name: "fail/ban without ID", call: ban, id: nil, code: codes.InvalidArgument, msg: "invalid agent ID: request must specify SPIFFE ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			seed(t, f)
			before := f.nodes(t)
			err := tt.call(f.client, tt.id)
			checkErr(t, err, tt.code, tt.msg)
			if tt.changed == nil {
				sameNodes(t, before, f.nodes(t))
				if len(f.removed) != 0 {
					t.Fatalf("removal hook called: %v", f.removed)
				}
				return
			}
			tt.changed(t, f.nodes(t))
			if len(f.removed) != 1 || f.removed[0] != "spiffe://example.org"+agentPath("a") {
				t.Fatalf("removal hook: %v", f.removed)
			}
		})
	}
}

func get(c agentv1.AgentClient, id *types.SPIFFEID) error {
	a, err := c.GetAgent(ctx, &agentv1.GetAgentRequest{Id: id})
	if err == nil && (a.Id.Path != id.Path || len(a.Selectors) != 1) {
		return errors.New("wrong agent")
	}
	return err
}

func del(c agentv1.AgentClient, id *types.SPIFFEID) error {
	_, err := c.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: id})
	return err
}

func ban(c agentv1.AgentClient, id *types.SPIFFEID) error {
	_, err := c.BanAgent(ctx, &agentv1.BanAgentRequest{Id: id})
	return err
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestCreateJoinToken(t *testing.T) {
	for _, tt := range []struct {
		name    string
		req     *agentv1.CreateJoinTokenRequest
		code    codes.Code
		msg     string
		wantEnt bool
	}{
		{name: "ok/random token", req: &agentv1.CreateJoinTokenRequest{Ttl: 600}},
		{name: "ok/custom token", req: &agentv1.CreateJoinTokenRequest{Ttl: 600, Token: "my-token"}},
		{name: "ok/with agent ID registers the alias entry", req: &agentv1.CreateJoinTokenRequest{Ttl: 600, Token: "tok", AgentId: sid("/node/agent-1")}, wantEnt: true},
		{name: "fail/zero TTL", req: &agentv1.CreateJoinTokenRequest{Token: "tok"}, code: codes.InvalidArgument, msg: "ttl is required, you must provide one"},
		{name: "fail/negative TTL", req: &agentv1.CreateJoinTokenRequest{Ttl: -1, Token: "tok"}, code: codes.InvalidArgument, msg: "ttl is required, you must provide one"},
		{name: "fail/agent ID in another trust domain", req: &agentv1.CreateJoinTokenRequest{Ttl: 600, Token: "tok", AgentId: &types.SPIFFEID{TrustDomain: "other.example", Path: "/node"}},
			code: codes.InvalidArgument, msg: `invalid agent ID: "spiffe://other.example/node" is not a member of trust domain "example.org"`},
		{name: "fail/agent ID in the reserved namespace", req: &agentv1.CreateJoinTokenRequest{Ttl: 600, Token: "tok", AgentId: sid("/spire/agent/x")},
			code: codes.InvalidArgument, msg: "invalid agent ID: "},
		{name: "fail/malformed agent ID", req: &agentv1.CreateJoinTokenRequest{Ttl: 600, Token: "tok", AgentId: sid("/a/../b")},
			code: codes.InvalidArgument, msg: "invalid agent ID: path cannot contain dot segments"},
		{name: "fail/token that cannot be a path segment", req: &agentv1.CreateJoinTokenRequest{Ttl: 600, Token: "a/b"},
			code: codes.InvalidArgument, msg: "invalid token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			tok, err := f.client.CreateJoinToken(ctx, tt.req)
			checkErr(t, err, tt.code, tt.msg)
			entries, _, lerr := f.store.ListEntries(ctx, &datastore.ListEntriesRequest{})
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tt.code != codes.OK {
				if _, ferr := f.store.FetchJoinToken(ctx, tt.req.Token); !errors.Is(ferr, datastore.ErrNotFound) {
					t.Fatalf("token stored after a refusal: %v", ferr)
				}
				if len(entries) != 0 {
					t.Fatalf("entries created after a refusal: %v", entries)
				}
				return
			}
			if tt.req.Token == "" && !uuidRE.MatchString(tok.Value) {
				t.Fatalf("token %q is not a random UUID", tok.Value)
			}
			if tt.req.Token != "" && tok.Value != tt.req.Token {
				t.Fatalf("token %q", tok.Value)
			}
			if tok.ExpiresAt != now.Unix()+600 {
				t.Fatalf("expires at %d", tok.ExpiresAt)
			}
			stored, err := f.store.FetchJoinToken(ctx, tok.Value)
			if err != nil || stored.ExpiresAt != tok.ExpiresAt {
				t.Fatalf("stored %+v %v", stored, err)
			}
			if !tt.wantEnt {
				if len(entries) != 0 {
					t.Fatalf("unexpected entries %v", entries)
				}
				return
			}
			agentID := "spiffe://example.org/spire/agent/join_token/" + tok.Value
			if len(entries) != 1 {
				t.Fatalf("entries %v", entries)
			}
			e := entries[0]
			if e.SPIFFEID != "spiffe://example.org/node/agent-1" || e.ParentID != agentID ||
				len(e.Selectors) != 1 || e.Selectors[0] != (datastore.Selector{Type: "spiffe_id", Value: agentID}) {
				t.Fatalf("alias entry %+v", e)
			}
		})
	}
	f := setup(t)
	a, _ := f.client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 1})
	b, _ := f.client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 1})
	if a.Value == b.Value {
		t.Fatal("two random tokens are equal")
	}
}

func TestAgentRPCsWithoutAttestor(t *testing.T) {
	svc, err := agent.New(agent.Config{TrustDomain: td, Store: datastoretest.OpenSQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.RenewAgent(ctx, &agentv1.RenewAgentRequest{})
	checkErr(t, err, codes.Unimplemented, "method RenewAgent not implemented")
	_, err = svc.PostStatus(ctx, &agentv1.PostStatusRequest{})
	checkErr(t, err, codes.Unimplemented, "unimplemented")
}

// T15: join token values never reach the server's logs.
func TestCreateJoinToken_T15_TokenNotLogged(t *testing.T) {
	f := setup(t)
	tok, err := f.client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 60, AgentId: sid("/node/x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 0, Token: "secret-token-value"}); err == nil {
		t.Fatal("zero TTL accepted")
	}
	logs := f.srv.Logs.String()
	if strings.Contains(logs, tok.Value) || strings.Contains(logs, "secret-token-value") {
		t.Fatalf("token in logs: %s", logs)
	}
}
