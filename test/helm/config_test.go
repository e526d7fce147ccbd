package helm

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neural-hive/hive-identity/internal/config"
	"github.com/neural-hive/hive-identity/internal/server/ca"
)

// TestHelmRenderedConfigLoads reads the rendered server.conf and agent.conf
// with the binaries' own configuration loader, and the generated upstream
// CA with the server's UpstreamAuthority "disk".
func TestHelmRenderedConfigLoads(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "ok/default values"},
		{name: "ok/HA values", args: []string{"-f", filepath.Join(chart(t), "values-ha.yaml")},
			env: map[string]string{"SPIRE_DATASTORE_CONNECTION_STRING": "postgres://spire:pw@postgres:5432/spire?sslmode=require"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs := render(t, tt.args...)
			dir := t.TempDir()
			opts := config.LoadOptions{ExpandEnv: tt.env != nil, Getenv: func(k string) string { return tt.env[k] }}

			serverConf := filepath.Join(dir, "server.conf")
			writeFile(t, serverConf, str(must(t, objs, "ConfigMap/spire-server"), "data", "server.conf"))
			sf, err := config.LoadServer(serverConf, opts)
			if err == nil {
				err = sf.Validate()
			}
			if err != nil {
				t.Fatalf("rendered server.conf: %v", err)
			}

			agentConf := filepath.Join(dir, "agent.conf")
			writeFile(t, agentConf, str(must(t, objs, "ConfigMap/spire-agent"), "data", "agent.conf"))
			af, err := config.LoadAgent(agentConf, config.LoadOptions{})
			if err == nil {
				err = af.Validate()
			}
			if err != nil {
				t.Fatalf("rendered agent.conf: %v", err)
			}

			secret := must(t, objs, "Secret/spire-server-upstream-ca")
			crt := decode(t, str(secret, "data", "tls.crt"))
			writeFile(t, filepath.Join(dir, "tls.crt"), crt)
			writeFile(t, filepath.Join(dir, "tls.key"), decode(t, str(secret, "data", "tls.key")))
			up, err := ca.NewUpstreamDisk(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "tls.crt"))
			if err != nil {
				t.Fatalf("generated upstream CA: %v", err)
			}
			if len(up.Roots()) != 1 {
				t.Fatalf("upstream roots %d", len(up.Roots()))
			}
			if bundle := str(must(t, objs, "ConfigMap/spire-bundle"), "data", "bundle.crt"); strings.TrimSpace(bundle) != strings.TrimSpace(crt) {
				t.Fatal("the agents' bootstrap bundle is not the upstream CA certificate")
			}
		})
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, b64 string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
