package nodeattest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/k8s/k8stest"
)

const (
	agentPodUID = "3b1f2c9e-8a4d-4f7e-9c1a-2d5e6f708192"
	nodeUID     = "6f0e3d1c-4b2a-4c8e-9d7f-1a2b3c4d5e6f"
)

func psatPayloadOf(cluster, token string) []byte {
	b, _ := json.Marshal(map[string]string{"cluster": cluster, "token": token})
	return b
}

// newPSATCluster starts a fake API server with the runbook's agent pod on
// worker-1 and returns it with a kubeconfig for it.
func newPSATCluster(t *testing.T) (*k8stest.APIServer, string) {
	t.Helper()
	api := k8stest.NewAPIServer(t)
	valid := k8stest.Token{
		Namespace: "spire-system", ServiceAccount: "spire-agent", PodName: "spire-agent-x7k2p", PodUID: agentPodUID,
		NodeName: "worker-1", Audiences: []string{"spire-server"}, Expiry: time.Now().Add(time.Hour),
	}
	api.AddToken("good-token", valid)
	wrongAud := valid
	wrongAud.Audiences = []string{"vault"}
	api.AddToken("wrong-audience", wrongAud)
	apiAud := valid
	apiAud.Audiences = []string{k8stest.DefaultAPIAudience}
	api.AddToken("api-audience", apiAud)
	expired := valid
	expired.Expiry = time.Now().Add(-time.Second)
	api.AddToken("expired", expired)
	other := valid
	other.Namespace, other.ServiceAccount = "neural-hive-execution", "worker-agents"
	api.AddToken("other-sa", other)
	legacy := valid
	legacy.PodName, legacy.PodUID = "", ""
	api.AddToken("legacy", legacy)
	user := valid
	user.Username = "alice"
	api.AddToken("user", user)
	replaced := valid
	replaced.PodUID = "99999999-8a4d-4f7e-9c1a-2d5e6f708192"
	api.AddToken("replaced-pod", replaced)
	ghost := valid
	ghost.PodName = "spire-agent-gone"
	api.AddToken("ghost-pod", ghost)
	evil := valid
	evil.PodName, evil.PodUID = "spire-agent-evil", "11111111-8a4d-4f7e-9c1a-2d5e6f708192"
	api.AddToken("evil-node", evil)

	api.AddPod("spire-system", "spire-agent-x7k2p", k8stest.Pod(k8stest.PodSpec{
		Namespace: "spire-system", Name: "spire-agent-x7k2p", UID: agentPodUID,
		NodeName: "worker-1", HostIP: "172.18.0.3", ServiceAccount: "spire-agent",
		Labels: map[string]string{"app": "spire-agent", "controller-revision-hash": "6d8f9c7b5"},
		Owner:  &k8stest.Owner{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "spire-agent", UID: "c0ffee00-0000-4000-8000-000000000001"},
	}))
	api.AddPod("spire-system", "spire-agent-evil", k8stest.Pod(k8stest.PodSpec{
		Namespace: "spire-system", Name: "spire-agent-evil", UID: evil.PodUID,
		NodeName: "worker-evil", HostIP: "172.18.0.9", ServiceAccount: "spire-agent",
	}))
	api.AddNode("worker-1", k8stest.Node("worker-1", nodeUID, "172.18.0.3", map[string]string{"topology.kubernetes.io/zone": "zone-a", "secret-label": "x"}))
	api.AddNode("worker-evil", k8stest.Node("worker-evil", "../../../spire/server", "172.18.0.9", nil))
	return api, api.KubeConfig(t, t.TempDir())
}

func TestK8sPSAT(t *testing.T) {
	ctx := context.Background()
	api, kubeconfig := newPSATCluster(t)
	p, err := NewK8sPSAT(td, K8sPSATConfig{Clusters: map[string]K8sPSATCluster{
		"neural-hive": {
			ServiceAccountAllowList: []string{"spire-system:spire-agent"},
			KubeConfigFile:          kubeconfig,
			AllowedNodeLabelKeys:    []string{"topology.kubernetes.io/zone"},
			AllowedPodLabelKeys:     []string{"app"},
		},
		"api-audience": {
			ServiceAccountAllowList: []string{"spire-system:spire-agent"},
			Audience:                []string{},
			KubeConfigFile:          kubeconfig,
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Type() != "k8s_psat" {
		t.Fatalf("Type() = %q", p.Type())
	}

	t.Run("ok/valid token", func(t *testing.T) {
		res, err := p.Attest(ctx, psatPayloadOf("neural-hive", "good-token"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := res.AgentID.String(), "spiffe://neural-hive.local/spire/agent/k8s_psat/neural-hive/"+nodeUID; got != want {
			t.Fatalf("agent ID %s, want %s", got, want)
		}
		if !res.CanReattest {
			t.Fatal("k8s_psat agents can re-attest")
		}
		var got []string
		for _, s := range res.Selectors {
			if s.Type != "k8s_psat" {
				t.Fatalf("selector type %q", s.Type)
			}
			got = append(got, s.Value)
		}
		want := []string{
			"cluster:neural-hive",
			"agent_ns:spire-system",
			"agent_sa:spire-agent",
			"agent_pod_name:spire-agent-x7k2p",
			"agent_pod_uid:" + agentPodUID,
			"agent_node_ip:172.18.0.3",
			"agent_node_name:worker-1",
			"agent_node_uid:" + nodeUID,
			"agent_node_label:topology.kubernetes.io/zone:zone-a",
			"agent_pod_label:app:spire-agent",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("selectors\n got %q\nwant %q", got, want)
		}
		reviews := api.Reviews()
		if last := reviews[len(reviews)-1]; last.Token != "good-token" || !slices.Equal(last.Audiences, []string{"spire-server"}) {
			t.Fatalf("token review spec %+v", last)
		}
	})

	t.Run("ok/empty audience uses the API server's", func(t *testing.T) {
		res, err := p.Attest(ctx, psatPayloadOf("api-audience", "api-audience"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(res.AgentID.String(), "/k8s_psat/api-audience/"+nodeUID) {
			t.Fatalf("agent ID %s", res.AgentID)
		}
		reviews := api.Reviews()
		if last := reviews[len(reviews)-1]; len(last.Audiences) != 0 {
			t.Fatalf("audiences sent: %q", last.Audiences)
		}
	})

	for _, tt := range []struct {
		name     string
		payload  []byte
		wantMsg  string
		denied   bool
		noReview bool // the API server must not be asked
	}{
		{name: "fail/T7 wrong audience", payload: psatPayloadOf("neural-hive", "wrong-audience"),
			wantMsg: "token not authenticated according to TokenReview API", denied: true},
		{name: "fail/T7 expired token", payload: psatPayloadOf("neural-hive", "expired"),
			wantMsg: "token not authenticated according to TokenReview API", denied: true},
		{name: "fail/T7 unknown token", payload: psatPayloadOf("neural-hive", "forged.jwt.token"),
			wantMsg: "token not authenticated according to TokenReview API", denied: true},
		{name: "fail/T7 service account not allowed", payload: psatPayloadOf("neural-hive", "other-sa"),
			wantMsg: `"neural-hive-execution:worker-agents" is not an allowed service account`, denied: true},
		{name: "fail/T7 user token", payload: psatPayloadOf("neural-hive", "user"),
			wantMsg: "not a service account token", denied: true},
		{name: "fail/T7 token not bound to a pod", payload: psatPayloadOf("neural-hive", "legacy"),
			wantMsg: "not a projected service account token bound to a pod", denied: true},
		{name: "fail/T7 pod replaced under the same name", payload: psatPayloadOf("neural-hive", "replaced-pod"),
			wantMsg: "the agent's pod does not match the token", denied: true},
		{name: "fail/T7 pod gone", payload: psatPayloadOf("neural-hive", "ghost-pod"),
			wantMsg: "the agent's pod does not exist", denied: true},
		{name: "fail/T7 unknown cluster", payload: psatPayloadOf("other-cluster", "good-token"),
			wantMsg: `not configured for cluster "other-cluster"`, noReview: true},
		{name: "fail/T5 node UID cannot change the ID path", payload: psatPayloadOf("neural-hive", "evil-node"),
			wantMsg: "invalid agent ID from node UID", denied: true},
		{name: "fail/missing cluster", payload: psatPayloadOf("", "good-token"), wantMsg: "missing cluster in attestation data", noReview: true},
		{name: "fail/missing token", payload: psatPayloadOf("neural-hive", ""), wantMsg: "missing token in attestation data", noReview: true},
		{name: "fail/garbage", payload: []byte("good-token"), wantMsg: "failed to unmarshal data payload", noReview: true},
		{name: "fail/empty", payload: nil, wantMsg: "missing attestation payload", noReview: true},
		{name: "fail/oversized", payload: []byte(`{"cluster":"neural-hive","token":"` + strings.Repeat("a", 70<<10) + `"}`),
			wantMsg: "too large", noReview: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(api.Reviews())
			res, err := p.Attest(ctx, tt.payload, nil)
			r, ok := IsRefusal(err)
			if !ok {
				t.Fatalf("want refusal %q, got %v (result %+v)", tt.wantMsg, err, res)
			}
			if res != nil {
				t.Fatalf("refusal with a result %+v", res)
			}
			if !strings.Contains(r.Msg, tt.wantMsg) || r.Denied != tt.denied {
				t.Fatalf("refusal %q denied=%v, want %q denied=%v", r.Msg, r.Denied, tt.wantMsg, tt.denied)
			}
			if asked := len(api.Reviews()) > before; asked == tt.noReview {
				t.Fatalf("token review asked = %v", asked)
			}
			var sent psatPayload
			if json.Unmarshal(tt.payload, &sent) == nil && sent.Token != "" && strings.Contains(r.Msg, sent.Token) {
				t.Fatalf("refusal message leaks the token: %q", r.Msg) // T15
			}
		})
	}

	t.Run("fail/T7 API server ignoring the audience", func(t *testing.T) {
		api.IgnoreAudiences(true)
		defer api.IgnoreAudiences(false)
		_, err := p.Attest(ctx, psatPayloadOf("neural-hive", "wrong-audience"), nil)
		r, ok := IsRefusal(err)
		if !ok || !r.Denied || !strings.Contains(r.Err.Error(), "did not validate audience") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestK8sPSAT_T7_APIServerDown(t *testing.T) {
	api, kubeconfig := newPSATCluster(t)
	p, err := NewK8sPSAT(td, K8sPSATConfig{Clusters: map[string]K8sPSATCluster{
		"neural-hive": {ServiceAccountAllowList: []string{"spire-system:spire-agent"}, KubeConfigFile: kubeconfig},
	}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	api.Close()
	res, err := p.Attest(context.Background(), psatPayloadOf("neural-hive", "good-token"), nil)
	if res != nil || err == nil {
		t.Fatalf("attested with the API server down: %+v %v", res, err)
	}
	// Fail closed with a clear error: not a refusal (the agent is not at
	// fault; the API answers Internal and the agent retries).
	if _, ok := IsRefusal(err); ok {
		t.Fatalf("API server outage reported as a refusal: %v", err)
	}
	if !strings.Contains(err.Error(), "unable to validate token with TokenReview API") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("unclear error: %v", err)
	}
	// The agent is told the step, not the API server's address.
	var pm interface{ PublicMessage() string }
	if !errors.As(err, &pm) || pm.PublicMessage() != "k8s_psat: unable to validate token with TokenReview API" {
		t.Fatalf("public message of %v: %v", err, pm)
	}

	// A missing kubeconfig is the same: no attestation, a clear error.
	p2, _ := NewK8sPSAT(td, K8sPSATConfig{Clusters: map[string]K8sPSATCluster{
		"neural-hive": {ServiceAccountAllowList: []string{"spire-system:spire-agent"}, KubeConfigFile: "/nonexistent/kubeconfig"},
	}})
	if _, err := p2.Attest(context.Background(), psatPayloadOf("neural-hive", "good-token"), nil); err == nil || !strings.Contains(err.Error(), "read kubeconfig") {
		t.Fatalf("missing kubeconfig: %v", err)
	}
}

func TestK8sPSAT_T7_APIUnauthorized(t *testing.T) {
	api, kubeconfig := newPSATCluster(t)
	// The server's own credentials are refused by the API server (401):
	// the review fails closed instead of trusting the agent's token.
	raw, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(bad, []byte(strings.ReplaceAll(string(raw), api.ClientToken(), "revoked")), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := NewK8sPSAT(td, K8sPSATConfig{Clusters: map[string]K8sPSATCluster{
		"c": {ServiceAccountAllowList: []string{"spire-system:spire-agent"}, KubeConfigFile: bad},
	}})
	res, err := p.Attest(context.Background(), psatPayloadOf("c", "good-token"), nil)
	if _, ok := IsRefusal(err); ok || err == nil || res != nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("token review with revoked credentials: %+v %v", res, err)
	}
}

func TestNewK8sPSATConfig(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     K8sPSATConfig
		wantErr string
	}{
		{name: "ok/no clusters", cfg: K8sPSATConfig{}},
		{name: "fail/no service accounts", cfg: K8sPSATConfig{Clusters: map[string]K8sPSATCluster{"c": {}}},
			wantErr: `cluster "c" configuration must have at least one service account allowed`},
		{name: "fail/T5 cluster name with a slash", cfg: K8sPSATConfig{Clusters: map[string]K8sPSATCluster{"a/../b": {ServiceAccountAllowList: []string{"x:y"}}}},
			wantErr: "not a valid SPIFFE ID path segment"},
		{name: "fail/T5 dot-dot cluster", cfg: K8sPSATConfig{Clusters: map[string]K8sPSATCluster{"..": {ServiceAccountAllowList: []string{"x:y"}}}},
			wantErr: "not a valid SPIFFE ID path segment"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewK8sPSAT(td, tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				_, err := p.Attest(context.Background(), psatPayloadOf("any", "t"), nil)
				if _, ok := IsRefusal(err); !ok {
					t.Fatalf("no clusters must refuse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
