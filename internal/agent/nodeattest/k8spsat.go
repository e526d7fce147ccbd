package nodeattest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// K8sPSATType is the attestation type of projected service account tokens.
const K8sPSATType = "k8s_psat"

// DefaultK8sPSATTokenPath is where the agent's DaemonSet mounts its
// projected service account token (SPIRE's default token_path).
const DefaultK8sPSATTokenPath = "/var/run/secrets/tokens/spire-agent"

// K8sPSATConfig is the plugin_data of the agent's NodeAttestor "k8s_psat".
type K8sPSATConfig struct {
	// Cluster is the cluster name the server's configuration knows
	// (cluster); required.
	Cluster string
	// TokenPath is the projected token file (token_path); empty means
	// DefaultK8sPSATTokenPath.
	TokenPath string
}

// K8sPSAT attests with the pod's projected service account token: the
// payload is SPIRE's JSON {"cluster": ..., "token": ...}. The token file is
// read at every attestation, because the kubelet rotates it. The server
// checks the token with the Kubernetes TokenReview API; the agent ID is
// spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node UID>.
type K8sPSAT struct {
	cfg K8sPSATConfig
}

// NewK8sPSAT checks cfg and returns the k8s_psat attestor. It does not read
// the token yet.
func NewK8sPSAT(cfg K8sPSATConfig) (*K8sPSAT, error) {
	if cfg.Cluster == "" {
		return nil, errors.New("nodeattest: k8s_psat: missing required cluster block")
	}
	if cfg.TokenPath == "" {
		cfg.TokenPath = DefaultK8sPSATTokenPath
	}
	return &K8sPSAT{cfg: cfg}, nil
}

var _ Attestor = (*K8sPSAT)(nil)

// Type returns "k8s_psat".
func (*K8sPSAT) Type() string { return K8sPSATType }

// Payload reads the token and returns the attestation data.
func (p *K8sPSAT) Payload(context.Context) ([]byte, error) {
	raw, err := os.ReadFile(p.cfg.TokenPath)
	if err != nil {
		return nil, fmt.Errorf("unable to load token from %s: %w", p.cfg.TokenPath, err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return nil, fmt.Errorf("unable to load token from %s: %q is empty", p.cfg.TokenPath, p.cfg.TokenPath)
	}
	return json.Marshal(struct {
		Cluster string `json:"cluster"`
		Token   string `json:"token"`
	}{p.cfg.Cluster, token})
}

// Respond fails: the k8s_psat method has no challenge.
func (*K8sPSAT) Respond(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("k8s_psat attestation does not expect a challenge")
}
