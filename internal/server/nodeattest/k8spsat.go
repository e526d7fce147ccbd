package nodeattest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/k8s"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// K8sPSATType is the name of the k8s_psat attestor.
const K8sPSATType = "k8s_psat"

// DefaultK8sPSATAudience is the audience a cluster's tokens must have when
// its configuration names none (SPIRE's default).
var DefaultK8sPSATAudience = []string{"spire-server"}

// maxPSATPayload bounds the attestation payload: a JSON object with a
// cluster name and one service account token.
const maxPSATPayload = 64 << 10

// K8sPSATConfig is the plugin_data of NodeAttestor "k8s_psat":
//
//	clusters = {
//	    "<name>" = {
//	        service_account_allow_list = ["spire-system:spire-agent"]
//	        audience = ["spire-server"]
//	        kube_config_file = ""
//	        allowed_node_label_keys = []
//	        allowed_pod_label_keys = []
//	    }
//	}
type K8sPSATConfig struct {
	// Clusters maps cluster names (as agents send them) to their settings.
	Clusters map[string]K8sPSATCluster
	// Getenv is passed to the in-cluster API client (KUBERNETES_SERVICE_HOST
	// and _PORT); nil means https://kubernetes.default.svc.
	Getenv func(string) string
	// Timeout bounds each API server request; zero means 10s.
	Timeout time.Duration
}

// K8sPSATCluster is one entry of clusters.
type K8sPSATCluster struct {
	// ServiceAccountAllowList holds "<namespace>:<name>" of the service
	// accounts agents may run as; at least one is required.
	ServiceAccountAllowList []string
	// Audience is what the token must be issued for. Nil means
	// DefaultK8sPSATAudience; a non-nil empty slice means the API server's
	// own audiences (audience = [] in HCL).
	Audience []string
	// KubeConfigFile reaches the cluster's API server; empty means the
	// in-cluster configuration.
	KubeConfigFile string
	// AllowedNodeLabelKeys and AllowedPodLabelKeys name the labels that
	// become agent_node_label and agent_pod_label selectors.
	AllowedNodeLabelKeys []string
	AllowedPodLabelKeys  []string
}

// K8sPSAT is the server side of the k8s_psat attestor. The agent sends its
// projected service account token and cluster name; the token is checked
// with the cluster's TokenReview API (audience, expiry, service account
// allow list), the pod it is bound to and that pod's node are read from the
// API server, and the agent ID is
// spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node UID>. Every failure
// is refused; an unreachable API server fails attestation (it never falls
// back to trusting the token). It is safe for concurrent use.
type K8sPSAT struct {
	td       spiffeid.TrustDomain
	clusters map[string]*psatCluster
}

type psatCluster struct {
	name           string
	serviceAccount map[string]bool
	audience       []string
	client         *k8s.Client
	nodeLabels     map[string]bool
	podLabels      map[string]bool
}

// NewK8sPSAT checks cfg and returns the attestor. It does not contact any
// API server. No clusters is valid and makes every attestation fail.
func NewK8sPSAT(td spiffeid.TrustDomain, cfg K8sPSATConfig) (*K8sPSAT, error) {
	if td.IsZero() {
		return nil, errors.New("nodeattest: k8s_psat: trust domain is required")
	}
	p := &K8sPSAT{td: td, clusters: map[string]*psatCluster{}}
	for _, name := range slices.Sorted(maps.Keys(cfg.Clusters)) {
		c := cfg.Clusters[name]
		// T5: the cluster name is a segment of every agent ID.
		if err := spiffeid.ValidatePathSegment(name); err != nil {
			return nil, fmt.Errorf("nodeattest: k8s_psat: cluster name %q is not a valid SPIFFE ID path segment: %w", name, err)
		}
		if len(c.ServiceAccountAllowList) == 0 {
			return nil, fmt.Errorf("nodeattest: k8s_psat: cluster %q configuration must have at least one service account allowed", name)
		}
		audience := c.Audience
		if audience == nil {
			audience = DefaultK8sPSATAudience
		}
		p.clusters[name] = &psatCluster{
			name:           name,
			serviceAccount: setOf(c.ServiceAccountAllowList),
			audience:       slices.Clone(audience),
			client: k8s.NewClient(k8s.ClientConfig{
				KubeConfigFile: c.KubeConfigFile,
				Getenv:         cfg.Getenv,
				Timeout:        cfg.Timeout,
			}),
			nodeLabels: setOf(c.AllowedNodeLabelKeys),
			podLabels:  setOf(c.AllowedPodLabelKeys),
		}
	}
	return p, nil
}

func setOf(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

var _ Attestor = (*K8sPSAT)(nil)

// Type implements Attestor.
func (p *K8sPSAT) Type() string { return K8sPSATType }

// psatPayload is the agent's attestation data, as SPIRE's agent sends it.
type psatPayload struct {
	Cluster string `json:"cluster"`
	Token   string `json:"token"`
}

// Attest implements Attestor.
func (p *K8sPSAT) Attest(ctx context.Context, payload []byte, _ Challenger) (*Result, error) {
	if len(payload) == 0 {
		return nil, &Refusal{Msg: "missing attestation payload"}
	}
	if len(payload) > maxPSATPayload {
		return nil, &Refusal{Msg: "attestation payload too large"}
	}
	var data psatPayload
	if err := json.Unmarshal(payload, &data); err != nil {
		return nil, &Refusal{Msg: "failed to unmarshal data payload", Err: err}
	}
	if data.Cluster == "" {
		return nil, &Refusal{Msg: "missing cluster in attestation data"}
	}
	if data.Token == "" {
		return nil, &Refusal{Msg: "missing token in attestation data"}
	}
	// T7: an unknown cluster name never reaches any API server.
	c := p.clusters[data.Cluster]
	if c == nil {
		return nil, &Refusal{Msg: fmt.Sprintf("not configured for cluster %q", data.Cluster)}
	}

	// T7: the API server decides; an error talking to it fails closed.
	st, err := c.client.ReviewToken(ctx, data.Token, c.audience)
	if err != nil {
		return nil, &apiServerError{step: "unable to validate token with TokenReview API", err: err}
	}
	if !st.Authenticated {
		// Expired, revoked, for another audience, or not a token at all.
		return nil, &Refusal{Msg: "token not authenticated according to TokenReview API", Denied: true, Err: errors.New(st.Error)}
	}
	// T7: an API server that ignores the requested audiences must still
	// report one of them.
	if len(c.audience) > 0 && !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(c.audience, a) }) {
		return nil, &Refusal{Msg: "token not authenticated according to TokenReview API", Denied: true,
			Err: fmt.Errorf("token review did not validate audience: wanted one of %q, got %q", c.audience, st.Audiences)}
	}
	namespace, saName, err := st.User.ServiceAccount()
	if err != nil {
		return nil, &Refusal{Msg: "token is not a service account token", Denied: true, Err: err}
	}
	fullName := namespace + ":" + saName
	if !c.serviceAccount[fullName] {
		return nil, &Refusal{Msg: fmt.Sprintf("%q is not an allowed service account", fullName), Denied: true}
	}
	podName, podUID, err := st.User.BoundPod()
	if err != nil {
		return nil, &Refusal{Msg: "token is not a projected service account token bound to a pod", Denied: true, Err: err}
	}

	pod, err := c.client.GetPod(ctx, namespace, podName)
	switch {
	case k8s.IsNotFound(err):
		return nil, &Refusal{Msg: "the agent's pod does not exist", Denied: true, Err: err}
	case err != nil:
		return nil, &apiServerError{step: "fail to get pod from k8s API server", err: err}
	}
	// T7: the token is bound to one pod instance; a pod recreated under the
	// same name is another agent.
	if pod.Metadata.UID != podUID {
		return nil, &Refusal{Msg: "the agent's pod does not match the token", Denied: true,
			Err: fmt.Errorf("pod UID %q, token bound to %q", pod.Metadata.UID, podUID)}
	}
	nodeName := pod.Spec.NodeName
	if nodeName == "" {
		return nil, &Refusal{Msg: "the agent's pod is not scheduled on a node", Denied: true}
	}
	node, err := c.client.GetNode(ctx, nodeName)
	switch {
	case k8s.IsNotFound(err):
		return nil, &Refusal{Msg: "the agent's node does not exist", Denied: true, Err: err}
	case err != nil:
		return nil, &apiServerError{step: "fail to get node from k8s API server", err: err}
	}
	nodeUID := node.Metadata.UID
	if nodeUID == "" {
		return nil, errors.New("nodeattest: k8s_psat: node UID is empty")
	}
	// T5: the node UID comes from the API server but is still checked as
	// one path segment: "..", "/" or "%2f" cannot move the agent ID.
	agentID, err := spiffeid.FromSegments(p.td, "spire", "agent", K8sPSATType, c.name, nodeUID)
	if err != nil {
		return nil, &Refusal{Msg: "invalid agent ID from node UID", Denied: true, Err: err}
	}

	sel := func(v string) datastore.Selector { return datastore.Selector{Type: K8sPSATType, Value: v} }
	sels := []datastore.Selector{
		sel("cluster:" + c.name),
		sel("agent_ns:" + namespace),
		sel("agent_sa:" + saName),
		sel("agent_pod_name:" + podName),
		sel("agent_pod_uid:" + podUID),
		sel("agent_node_ip:" + pod.Status.HostIP),
		sel("agent_node_name:" + nodeName),
		sel("agent_node_uid:" + nodeUID),
	}
	for _, k := range slices.Sorted(maps.Keys(node.Metadata.Labels)) {
		if c.nodeLabels[k] {
			sels = append(sels, sel("agent_node_label:"+k+":"+node.Metadata.Labels[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(pod.Metadata.Labels)) {
		if c.podLabels[k] {
			sels = append(sels, sel("agent_pod_label:"+k+":"+pod.Metadata.Labels[k]))
		}
	}
	return &Result{AgentID: agentID, Selectors: sels, CanReattest: true}, nil
}

// apiServerError is a failure to talk to a cluster's API server (not the
// agent's fault: the agent is answered Internal and retries). Error is the
// whole cause, for the server's log; PublicMessage, what the agent is told
// (as SPIRE tells it, so its log says why), names the step but leaves out
// addresses and transport details.
type apiServerError struct {
	step string
	err  error
}

func (e *apiServerError) Error() string {
	return "nodeattest: k8s_psat: " + e.step + ": " + e.err.Error()
}

func (e *apiServerError) Unwrap() error { return e.err }

// PublicMessage is the text the agent API shows the agent.
func (e *apiServerError) PublicMessage() string { return "k8s_psat: " + e.step }
