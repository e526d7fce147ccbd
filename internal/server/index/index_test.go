package index

import (
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

const (
	serverID = "spiffe://neural-hive.local/spire/server"
	agentA   = "spiffe://neural-hive.local/spire/agent/join_token/a"
	agentB   = "spiffe://neural-hive.local/spire/agent/join_token/b"
	aliasID  = "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent"
)

func entry(id, spiffeID, parent string, sels ...datastore.Selector) *datastore.Entry {
	return &datastore.Entry{ID: id, SPIFFEID: spiffeID, ParentID: parent, Selectors: sels}
}

func ids(es []*datastore.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func sel(t, v string) datastore.Selector { return datastore.Selector{Type: t, Value: v} }

func TestAuthorizedEntries(t *testing.T) {
	x := New(serverID)
	x.Load([]*datastore.Entry{
		entry("alias", aliasID, serverID, sel("k8s_psat", "cluster:hive"), sel("k8s_psat", "agent_ns:spire-system")),
		entry("a-direct", "spiffe://neural-hive.local/w/a", agentA, sel("unix", "uid:1")),
		entry("b-direct", "spiffe://neural-hive.local/w/b", agentB, sel("unix", "uid:2")),
		entry("via-alias", "spiffe://neural-hive.local/ns/x/sa/worker-agents", aliasID, sel("k8s", "ns:x")),
		entry("grandchild", "spiffe://neural-hive.local/w/grand", "spiffe://neural-hive.local/w/a", sel("unix", "uid:3")),
		entry("cycle-1", "spiffe://neural-hive.local/c/1", "spiffe://neural-hive.local/c/2", sel("unix", "uid:4")),
		entry("cycle-2", "spiffe://neural-hive.local/c/2", "spiffe://neural-hive.local/c/1", sel("unix", "uid:5")),
	}, map[string][]datastore.Selector{
		agentA: {sel("k8s_psat", "cluster:hive"), sel("k8s_psat", "agent_ns:spire-system"), sel("k8s_psat", "agent_sa:spire-agent")},
		agentB: {sel("k8s_psat", "cluster:hive")}, // lacks agent_ns: not in the alias
	}, 1)

	for _, tt := range []struct {
		name  string
		agent string
		want  []string
	}{
		{"ok/direct, descendants and alias", agentA, []string{"a-direct", "grandchild", "via-alias"}},
		// T2: agent B never receives an entry parented to agent A or to an alias it does not match.
		{"ok/T2 other agent sees only its own", agentB, []string{"b-direct"}},
		{"ok/unknown agent sees nothing", "spiffe://neural-hive.local/spire/agent/x/unknown", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(x.AuthorizedEntries(tt.agent))
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
	if _, ok := x.IsAuthorized(agentB, "a-direct"); ok {
		t.Fatal("T2: agent B authorized for agent A's entry")
	}
	if e, ok := x.IsAuthorized(agentA, "via-alias"); !ok || e.ID != "via-alias" {
		t.Fatal("agent A not authorized for the alias child")
	}
}

func TestSubscriptionsNotifyOnlyAffectedAgents(t *testing.T) {
	x := New(serverID)
	x.Load(nil, map[string][]datastore.Selector{agentA: nil, agentB: nil}, 0)
	sa, sb := x.Subscribe(agentA), x.Subscribe(agentB)
	defer sa.Close()
	defer sb.Close()
	<-sa.C() // initial notifications
	<-sb.C()

	x.Update(Update{Entries: map[string]*datastore.Entry{"e1": entry("e1", "spiffe://neural-hive.local/w/1", agentA, sel("unix", "uid:1"))}, Revision: 2})
	select {
	case <-sa.C():
	default:
		t.Fatal("agent A not notified of its new entry")
	}
	select {
	case <-sb.C():
		t.Fatal("agent B notified of agent A's entry")
	default:
	}
	if sa.Revision() != 2 {
		t.Fatalf("revision %d, want 2", sa.Revision())
	}

	// Deletion notifies A again; a bundle change notifies everybody.
	x.Update(Update{Entries: map[string]*datastore.Entry{"e1": nil}, Revision: 3})
	<-sa.C()
	x.Update(Update{BundleChanged: true, Revision: 4})
	<-sa.C()
	<-sb.C()

	// Node selectors that join an alias widen the set.
	x.Update(Update{Entries: map[string]*datastore.Entry{
		"alias": entry("alias", aliasID, serverID, sel("x509pop", "ca:fingerprint:1")),
		"child": entry("child", "spiffe://neural-hive.local/w/c", aliasID, sel("unix", "uid:9")),
	}, Revision: 5})
	select {
	case <-sb.C():
		t.Fatal("agent B notified before it matches the alias")
	default:
	}
	x.Update(Update{NodeSelectors: map[string][]datastore.Selector{agentB: {sel("x509pop", "ca:fingerprint:1")}}, Revision: 6})
	<-sb.C()
	if got := ids(x.AuthorizedEntries(agentB)); len(got) != 1 || got[0] != "child" {
		t.Fatalf("agent B entries %v", got)
	}

	if n := x.CloseAgent(agentB); n != 1 {
		t.Fatalf("CloseAgent closed %d", n)
	}
	if _, open := <-sb.C(); open {
		t.Fatal("evicted agent's channel still open")
	}
	if x.Subscribers() != 1 {
		t.Fatalf("subscribers %d", x.Subscribers())
	}
}
