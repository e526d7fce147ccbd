package spiffegrpc_test

import (
	"context"
	"errors"
	"testing"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAuthorizers(t *testing.T) {
	id := func(s string) spiffeid.ID { return spiffeid.RequireFromString(s) }
	worker := id("spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents")
	orch := id("spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/orchestrator-dynamic")
	hive := spiffeid.RequireTrustDomainFromString("neural-hive.local")
	const register, discover = "/registry.v1.Registry/Register", "/registry.v1.Registry/Discover"
	perMethod := spiffegrpc.AuthorizeMethods(map[string]spiffegrpc.Authorizer{
		register: spiffegrpc.AuthorizeID(worker),
		discover: spiffegrpc.AuthorizeID(orch),
	})
	for _, tt := range []struct {
		name   string
		authz  spiffegrpc.Authorizer
		id     spiffeid.ID
		method string
		ok     bool
	}{
		{"ok/any", spiffegrpc.AuthorizeAny(), id("spiffe://other.td/x"), register, true},
		{"ok/exact", spiffegrpc.AuthorizeID(worker), worker, register, true},
		{"fail/exact-other-id", spiffegrpc.AuthorizeID(worker), orch, register, false},
		{"fail/exact-same-path-other-td", spiffegrpc.AuthorizeID(worker), id("spiffe://evil.td/ns/neural-hive-execution/sa/worker-agents"), register, false},
		{"ok/one-of", spiffegrpc.AuthorizeOneOf(worker, orch), orch, register, true},
		{"fail/one-of", spiffegrpc.AuthorizeOneOf(worker), orch, register, false},
		{"fail/one-of-empty", spiffegrpc.AuthorizeOneOf(), orch, register, false},
		{"ok/member-of", spiffegrpc.AuthorizeMemberOf(hive), orch, register, true},
		{"fail/member-of-other-td", spiffegrpc.AuthorizeMemberOf(hive), id("spiffe://neural-hive.local.evil/x"), register, false},
		{"ok/path-prefix-exact", spiffegrpc.AuthorizePathPrefix(hive, "/ns/neural-hive-execution"), id("spiffe://neural-hive.local/ns/neural-hive-execution"), register, true},
		{"ok/path-prefix-below", spiffegrpc.AuthorizePathPrefix(hive, "/ns/neural-hive-execution/"), worker, register, true},
		{"fail/path-prefix-not-segment-boundary", spiffegrpc.AuthorizePathPrefix(hive, "/ns/neural-hive"), worker, register, false},
		{"fail/path-prefix-other-td", spiffegrpc.AuthorizePathPrefix(hive, "/ns"), id("spiffe://evil.td/ns/x"), register, false},
		{"ok/matcher", spiffegrpc.AuthorizeMatcher(spiffeid.MatchMemberOf(hive)), worker, register, true},
		{"fail/matcher", spiffegrpc.AuthorizeMatcher(spiffeid.MatchID(orch)), worker, register, false},
		{"ok/methods-register-by-worker", perMethod, worker, register, true},
		{"fail/methods-register-by-orchestrator", perMethod, orch, register, false},
		{"ok/methods-discover-by-orchestrator", perMethod, orch, discover, true},
		{"fail/methods-discover-by-worker", perMethod, worker, discover, false},
		{"fail/methods-no-rule", perMethod, worker, "/registry.v1.Registry/Deregister", false},
		{"ok/all", spiffegrpc.AuthorizeAll(spiffegrpc.AuthorizeMemberOf(hive), spiffegrpc.AuthorizePathPrefix(hive, "/ns")), worker, register, true},
		{"fail/all", spiffegrpc.AuthorizeAll(spiffegrpc.AuthorizeMemberOf(hive), spiffegrpc.AuthorizeID(orch)), worker, register, false},
		{"ok/func-hook", func(_ context.Context, id spiffeid.ID, m string) error {
			if m == discover && id == orch {
				return nil
			}
			return errors.New("nope")
		}, orch, discover, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.authz(context.Background(), tt.id, tt.method)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && tt.name != "fail/func-hook" && !errors.Is(err, spiffegrpc.ErrDenied) {
				t.Errorf("err %v does not wrap ErrDenied", err)
			}
		})
	}
}
