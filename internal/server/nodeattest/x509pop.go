package nodeattest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/x509pop"
)

// DefaultX509PoPPathTemplate is SPIRE's default agent path for x509pop in
// external_pki mode: /x509pop/<sha1 fingerprint of the leaf>.
const DefaultX509PoPPathTemplate = "/{{ .PluginName }}/{{ .Fingerprint }}"

// X509PoP is the server side of the x509pop attestor (external_pki mode): the
// agent's certificate must chain to one of the configured CA bundles, and the
// agent must prove it holds the certificate's key by signing a fresh nonce.
// Selectors (type x509pop): subject:cn:<CN>, ca:fingerprint:<sha1> for each
// CA in the verified chains, serialnumber:<hex>.
type X509PoP struct {
	TD    spiffeid.TrustDomain
	Roots *x509.CertPool
	Path  *template.Template
	Clock func() time.Time
}

// X509PoPConfig is the plugin_data of NodeAttestor "x509pop".
type X509PoPConfig struct {
	CABundlePath      string
	CABundlePaths     []string
	AgentPathTemplate string
}

// NewX509PoP loads the CA bundles and parses the agent path template.
func NewX509PoP(td spiffeid.TrustDomain, cfg X509PoPConfig) (*X509PoP, error) {
	paths := cfg.CABundlePaths
	if cfg.CABundlePath != "" {
		paths = append([]string{cfg.CABundlePath}, paths...)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("nodeattest: x509pop: ca_bundle_path or ca_bundle_paths must be configured")
	}
	roots := x509.NewCertPool()
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("nodeattest: x509pop: read CA bundle %q: %w", p, err)
		}
		n := 0
		for rest := raw; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("nodeattest: x509pop: parse CA bundle %q: %w", p, err)
			}
			roots.AddCert(cert)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("nodeattest: x509pop: no certificates in CA bundle %q", p)
		}
	}
	text := cfg.AgentPathTemplate
	if text == "" {
		text = DefaultX509PoPPathTemplate
	}
	tmpl, err := template.New("agent_path_template").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("nodeattest: x509pop: agent_path_template: %w", err)
	}
	return &X509PoP{TD: td, Roots: roots, Path: tmpl}, nil
}

// Type implements Attestor.
func (p *X509PoP) Type() string { return x509pop.PluginName }

type pathData struct {
	*x509.Certificate
	PluginName      string
	Fingerprint     string
	SerialNumberHex string
	TrustDomain     string
}

// Attest implements Attestor.
func (p *X509PoP) Attest(ctx context.Context, payload []byte, challenge Challenger) (*Result, error) {
	if len(payload) > x509pop.MaxChainBytes {
		return nil, &Refusal{Msg: "failed to attest: attestation data too large"}
	}
	var data x509pop.AttestationData
	if err := json.Unmarshal(payload, &data); err != nil {
		return nil, &Refusal{Msg: "failed to attest: unable to unmarshal attestation data", Err: err}
	}
	if len(data.Certificates) == 0 {
		return nil, &Refusal{Msg: "failed to attest: no certificate to attest"}
	}
	if len(data.Certificates) > x509pop.MaxChainLen {
		return nil, &Refusal{Msg: "failed to attest: certificate chain too long"}
	}
	leaf, err := x509.ParseCertificate(data.Certificates[0])
	if err != nil {
		return nil, &Refusal{Msg: "failed to attest: unable to parse leaf certificate", Err: err}
	}
	inter := x509.NewCertPool()
	for _, der := range data.Certificates[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, &Refusal{Msg: "failed to attest: unable to parse intermediate certificate", Err: err}
		}
		inter.AddCert(c)
	}
	now := time.Now
	if p.Clock != nil {
		now = p.Clock
	}
	// T8: expired, not-yet-valid and foreign chains fail here.
	chains, err := leaf.Verify(x509.VerifyOptions{
		Intermediates: inter,
		Roots:         p.Roots,
		CurrentTime:   now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, &Refusal{Msg: "failed to attest: certificate verification failed", Denied: true, Err: err}
	}

	// T8: the key that signs the nonce is the verified leaf's; a fresh nonce
	// per attestation makes a recorded response useless.
	ch, err := x509pop.NewChallenge(leaf)
	if err != nil {
		return nil, &Refusal{Msg: "failed to attest: unsupported certificate key", Err: err}
	}
	chBytes, err := json.Marshal(ch)
	if err != nil {
		return nil, fmt.Errorf("nodeattest: x509pop: marshal challenge: %w", err)
	}
	respBytes, err := challenge(ctx, chBytes)
	if err != nil {
		return nil, err
	}
	var resp x509pop.Response
	if err := json.Unmarshal(respBytes, &resp); err != nil {
		return nil, &Refusal{Msg: "failed to attest: unable to unmarshal challenge response", Err: err}
	}
	if err := x509pop.Verify(leaf.PublicKey, ch, &resp); err != nil {
		return nil, &Refusal{Msg: "failed to attest: challenge response verification failed", Denied: true, Err: err}
	}

	var path bytes.Buffer
	if err := p.Path.Execute(&path, pathData{
		Certificate:     leaf,
		PluginName:      x509pop.PluginName,
		Fingerprint:     x509pop.Fingerprint(leaf),
		SerialNumberHex: x509pop.SerialNumberHex(leaf.SerialNumber),
		TrustDomain:     p.TD.Name(),
	}); err != nil {
		return nil, &Refusal{Msg: "failed to attest: agent path template", Err: err}
	}
	// T5: the path is parsed strictly; a CN or SAN that smuggles "..", "%2e"
	// or "/" into a segment is refused instead of changing the ID's path.
	agentID, err := spiffeid.FromPath(p.TD, "/spire/agent"+path.String())
	if err != nil {
		return nil, &Refusal{Msg: "failed to attest: invalid agent ID from certificate", Denied: true, Err: err}
	}

	var sels []datastore.Selector
	if cn := leaf.Subject.CommonName; cn != "" {
		sels = append(sels, datastore.Selector{Type: x509pop.PluginName, Value: "subject:cn:" + cn})
	}
	seen := map[string]bool{}
	for _, chain := range chains {
		for _, c := range chain[1:] {
			fp := x509pop.Fingerprint(c)
			if !seen[fp] {
				seen[fp] = true
				sels = append(sels, datastore.Selector{Type: x509pop.PluginName, Value: "ca:fingerprint:" + fp})
			}
		}
	}
	sels = append(sels, datastore.Selector{Type: x509pop.PluginName, Value: "serialnumber:" + x509pop.SerialNumberHex(leaf.SerialNumber)})
	return &Result{AgentID: agentID, Selectors: sels, CanReattest: true}, nil
}
