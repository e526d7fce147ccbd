// Package helm checks the chart at helm-charts/spire with a real helm: it
// builds helm from the Go module proxy (the tools/helm module), runs
// `helm lint` and `helm template` with the default and HA values, and checks
// the rendered objects against what the operations runbook uses.
//
// Set HELM to a helm binary to skip the build; `go test -short` skips the
// package.
package helm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl"
	"go.yaml.in/yaml/v3"
)

const ns = "spire-system"

// kubeVersion is the cluster version helm template assumes: a helm built
// with plain `go build` defaults to v1.20, below the chart's kubeVersion.
const kubeVersion = "1.31.0"

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

func repoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		tb.Fatal(err)
	}
	return root
}

// helm returns a helm binary: $HELM, or one built once per test run from
// tools/helm (helm.sh/helm/v3 at the version its go.mod pins).
func helm(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds helm; skipped with -short")
	}
	helmOnce.Do(func() {
		if p := os.Getenv("HELM"); p != "" {
			helmPath = p
			return
		}
		dir, err := os.MkdirTemp("", "hid-helm")
		if err != nil {
			helmErr = err
			return
		}
		helmPath = filepath.Join(dir, "helm")
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", helmPath, "helm.sh/helm/v3/cmd/helm")
		cmd.Dir = filepath.Join(repoRoot(tb), "tools", "helm")
		cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			helmErr = fmt.Errorf("build helm in tools/helm: %w\n%s", err, out)
			return
		}
		tb.Logf("built helm in %s", time.Since(start).Round(time.Second))
	})
	if helmErr != nil {
		tb.Fatal(helmErr)
	}
	return helmPath
}

func run(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	cmd := exec.Command(helm(tb), args...)
	home := tb.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func chart(tb testing.TB) string { return filepath.Join(repoRoot(tb), "helm-charts", "spire") }

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) kind() string { return str(o, "kind") }
func (o object) name() string { return str(o, "metadata", "name") }

// get walks maps by key and lists by index (int).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(object)
			if !ok {
				mm, ok2 := v.(map[string]any)
				if !ok2 {
					return nil
				}
				m = mm
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

// render runs helm template and returns the objects by "Kind/name".
func render(t *testing.T, args ...string) map[string]object {
	t.Helper()
	out, err := run(t, append([]string{"template", "spire", chart(t), "--namespace", ns, "--kube-version", kubeVersion}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := map[string]object{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if o == nil {
			continue
		}
		obj := object(o)
		key := obj.kind() + "/" + obj.name()
		if _, dup := objs[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		objs[key] = obj
	}
	return objs
}

func must(t *testing.T, objs map[string]object, key string) object {
	t.Helper()
	o, ok := objs[key]
	if !ok {
		keys := make([]string, 0, len(objs))
		for k := range objs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Fatalf("%s not rendered; have %v", key, keys)
	}
	if k := o.kind(); k != "ClusterRole" && k != "ClusterRoleBinding" && str(o, "metadata", "namespace") != ns {
		t.Fatalf("%s in namespace %q, want %s", key, str(o, "metadata", "namespace"), ns)
	}
	return o
}

func TestHelmLint(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"-f", filepath.Join(chart(t), "values-ha.yaml")},
		{"--set", "server.image.tag=X", "--set", "agent.image.tag=Y", "--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.prometheusRule.enabled=true"},
	} {
		out, err := run(t, append([]string{"lint", "--strict", chart(t), "--namespace", ns}, args...)...)
		if err != nil {
			t.Fatalf("helm lint %v: %v\n%s", args, err, out)
		}
	}
}

func TestHelmTemplateDefault(t *testing.T) {
	objs := render(t, "--set", "server.image.tag=X", "--set", "agent.image.tag=Y")

	for _, key := range []string{
		"Deployment/spire-server", "DaemonSet/spire-agent", "Service/spire-server",
		"ServiceAccount/spire-server", "ServiceAccount/spire-agent",
		"ConfigMap/spire-server", "ConfigMap/spire-agent", "ConfigMap/spire-bundle",
		"Secret/spire-server-upstream-ca", "PersistentVolumeClaim/spire-server-data",
		"ClusterRole/spire-system-spire-server", "ClusterRoleBinding/spire-system-spire-server",
		"ClusterRole/spire-system-spire-agent", "ClusterRoleBinding/spire-system-spire-agent",
	} {
		must(t, objs, key)
	}
	for key := range objs {
		kind := strings.Split(key, "/")[0]
		if kind == "PodMonitor" || kind == "PrometheusRule" || kind == "PodDisruptionBudget" {
			t.Errorf("%s rendered by default", key)
		}
	}

	t.Run("server deployment", func(t *testing.T) {
		d := must(t, objs, "Deployment/spire-server")
		if n, _ := get(d, "spec", "replicas").(int); n != 1 {
			t.Errorf("replicas = %v", get(d, "spec", "replicas"))
		}
		if s := str(d, "spec", "strategy", "type"); s != "Recreate" {
			t.Errorf("SQLite on a RWO volume needs Recreate, got %q", s)
		}
		c := get(d, "spec", "template", "spec", "containers", 0)
		// kubectl get deployment spire-server -o jsonpath='{.spec.template.spec.containers[0].image}'
		if img := str(c, "image"); img != "ghcr.io/neural-hive/spire-server:X" {
			t.Errorf("server image %q", img)
		}
		if str(c, "name") != "spire-server" || !slices.Equal(toStrings(list(c, "args")), []string{"run", "-config", "/run/spire/config/server.conf"}) {
			t.Errorf("server container %v %v", str(c, "name"), list(c, "args"))
		}
		checkProbes(t, c)
		checkPort(t, c, "grpc", 8081)
		checkPort(t, c, "metrics", 9988)
		if !mountedAt(d, c, "admin-socket", "/tmp/spire-server/private") {
			t.Error("admin socket directory not at SPIRE's default (/tmp/spire-server/private)")
		}
		if str(d, "spec", "template", "spec", "serviceAccountName") != "spire-server" {
			t.Error("server service account")
		}
		if get(d, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
			t.Error("server must run as non-root")
		}
		if cmd := toStrings(list(c, "lifecycle", "postStart", "exec", "command")); !slices.Equal(cmd, []string{"/bin/sh", "/run/spire/bootstrap/bootstrap.sh"}) {
			t.Errorf("postStart %v", cmd)
		}
		if claim := str(volume(d, "data"), "persistentVolumeClaim", "claimName"); claim != "spire-server-data" {
			t.Errorf("data volume claim %q", claim)
		}
		svc := must(t, objs, "Service/spire-server")
		if str(svc, "spec", "selector", "app") != "spire-server" || get(svc, "spec", "ports", 0, "port") != 8081 {
			t.Errorf("service %v", svc["spec"])
		}
	})

	t.Run("agent daemonset", func(t *testing.T) {
		ds := must(t, objs, "DaemonSet/spire-agent")
		// kubectl get pods -n spire-system -l app=spire-agent
		for _, path := range [][]any{{"metadata", "labels", "app"}, {"spec", "selector", "matchLabels", "app"}, {"spec", "template", "metadata", "labels", "app"}} {
			if str(ds, path...) != "spire-agent" {
				t.Errorf("%v = %q, want spire-agent", path, str(ds, path...))
			}
		}
		spec := get(ds, "spec", "template", "spec")
		if get(spec, "hostPID") != true {
			t.Error("agent needs hostPID to attest workloads by PID")
		}
		c := get(spec, "containers", 0)
		if img := str(c, "image"); img != "ghcr.io/neural-hive/spire-agent:Y" {
			t.Errorf("agent image %q", img)
		}
		checkProbes(t, c)
		checkPort(t, c, "metrics", 9988)
		sock := volume(ds, "socket-dir")
		if str(sock, "hostPath", "path") != "/run/spire/sockets" || str(sock, "hostPath", "type") != "DirectoryOrCreate" {
			t.Errorf("socket volume %v", sock)
		}
		if !mountedAt(ds, c, "socket-dir", "/run/spire/sockets") {
			t.Error("socket directory not mounted at /run/spire/sockets")
		}
		tok := get(volume(ds, "spire-token"), "projected", "sources", 0, "serviceAccountToken")
		if str(tok, "audience") != "spire-server" || str(tok, "path") != "spire-agent" {
			t.Errorf("projected token %v", tok)
		}
		if !mountedAt(ds, c, "spire-token", "/var/run/secrets/tokens") {
			t.Error("projected token not at /var/run/secrets/tokens (k8s_psat's default token_path)")
		}
		if str(spec, "serviceAccountName") != "spire-agent" {
			t.Error("agent service account")
		}
	})

	t.Run("rbac", func(t *testing.T) {
		server := must(t, objs, "ClusterRole/spire-system-spire-server")
		wantRule(t, server, "authentication.k8s.io", "tokenreviews", "create")
		wantRule(t, server, "", "pods", "get")
		wantRule(t, server, "", "nodes", "get")
		agent := must(t, objs, "ClusterRole/spire-system-spire-agent")
		wantRule(t, agent, "", "nodes/proxy", "get")
		wantRule(t, agent, "", "pods", "get")
		for _, b := range []string{"spire-server", "spire-agent"} {
			rb := must(t, objs, "ClusterRoleBinding/spire-system-"+b)
			if str(rb, "subjects", 0, "name") != b || str(rb, "subjects", 0, "namespace") != ns || str(rb, "roleRef", "name") != "spire-system-"+b {
				t.Errorf("binding %s: %v %v", b, rb["subjects"], rb["roleRef"])
			}
		}
	})

	t.Run("configuration", func(t *testing.T) {
		server := parseHCL(t, str(must(t, objs, "ConfigMap/spire-server"), "data", "server.conf"))
		if s := str(server, "server", 0, "trust_domain"); s != "neural-hive.local" {
			t.Errorf("trust_domain %q", s)
		}
		if s := str(server, "server", 0, "socket_path"); s != "/tmp/spire-server/private/api.sock" {
			t.Errorf("admin socket %q", s)
		}
		hc := get(server, "health_checks", 0)
		if str(hc, "live_path") != "/live" || str(hc, "ready_path") != "/ready" || str(hc, "bind_port") != "8080" {
			t.Errorf("server health_checks %v", hc)
		}
		psat := get(server, "plugins", 0, "NodeAttestor", 0, "k8s_psat", 0, "plugin_data", 0, "clusters", 0, "neural-hive", 0)
		if !slices.Equal(toStrings(list(psat, "service_account_allow_list")), []string{"spire-system:spire-agent"}) ||
			!slices.Equal(toStrings(list(psat, "audience")), []string{"spire-server"}) {
			t.Errorf("k8s_psat clusters %v", psat)
		}
		if s := str(server, "plugins", 0, "DataStore", 0, "sql", 0, "plugin_data", 0, "database_type"); s != "sqlite3" {
			t.Errorf("database_type %q", s)
		}

		agent := parseHCL(t, str(must(t, objs, "ConfigMap/spire-agent"), "data", "agent.conf"))
		a := get(agent, "agent", 0)
		if str(a, "socket_path") != "/run/spire/sockets/agent.sock" || str(a, "server_address") != "spire-server.spire-system.svc" ||
			str(a, "trust_bundle_path") != "/run/spire/bundle/bundle.crt" {
			t.Errorf("agent block %v", a)
		}
		if s := str(agent, "plugins", 0, "NodeAttestor", 0, "k8s_psat", 0, "plugin_data", 0, "cluster"); s != "neural-hive" {
			t.Errorf("agent cluster %q", s)
		}
		if s := str(agent, "plugins", 0, "NodeAttestor", 0, "k8s_psat", 0, "plugin_data", 0, "token_path"); s != "/var/run/secrets/tokens/spire-agent" {
			t.Errorf("agent token_path %q", s)
		}
		if get(agent, "plugins", 0, "WorkloadAttestor", 0, "k8s", 0, "plugin_data", 0, "skip_kubelet_verification") != true {
			t.Error("k8s workload attestor")
		}
		hc = get(agent, "health_checks", 0)
		if str(hc, "live_path") != "/live" || str(hc, "ready_path") != "/ready" || str(hc, "bind_port") != "8080" {
			t.Errorf("agent health_checks %v", hc)
		}

		bundle := str(must(t, objs, "ConfigMap/spire-bundle"), "data", "bundle.crt")
		secret := must(t, objs, "Secret/spire-server-upstream-ca")
		if !strings.HasPrefix(bundle, "-----BEGIN CERTIFICATE-----") || str(secret, "type") != "kubernetes.io/tls" || str(secret, "data", "tls.key") == "" {
			t.Errorf("upstream CA: bundle %q, secret type %q", bundle[:min(40, len(bundle))], str(secret, "type"))
		}
	})

	t.Run("bootstrap entries", func(t *testing.T) {
		script := str(must(t, objs, "ConfigMap/spire-server"), "data", "bootstrap.sh")
		calls := runBootstrap(t, script)
		want := [][]string{
			{"healthcheck"},
			// The runbook's node alias.
			{"entry", "create", "-node", "-spiffeID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent",
				"-selector", "k8s_psat:cluster:neural-hive", "-selector", "k8s_psat:agent_ns:spire-system", "-selector", "k8s_psat:agent_sa:spire-agent"},
			// The runbook's worker-agents entry, verbatim.
			{"entry", "create", "-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents",
				"-parentID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent",
				"-selector", "k8s:ns:neural-hive-execution", "-selector", "k8s:sa:worker-agents", "-ttl", "3600"},
			{"entry", "create", "-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-execution/sa/service-registry",
				"-parentID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent",
				"-selector", "k8s:ns:neural-hive-execution", "-selector", "k8s:sa:service-registry", "-ttl", "3600"},
			{"entry", "create", "-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/orchestrator-dynamic",
				"-parentID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent",
				"-selector", "k8s:ns:neural-hive-orchestration", "-selector", "k8s:sa:orchestrator-dynamic", "-ttl", "3600"},
		}
		if len(calls) != len(want) {
			t.Fatalf("bootstrap ran\n%q\nwant\n%q", calls, want)
		}
		for i := range want {
			if !slices.Equal(calls[i], want[i]) {
				t.Errorf("call %d\n got %q\nwant %q", i, calls[i], want[i])
			}
		}
	})
}

func TestHelmTemplateHA(t *testing.T) {
	objs := render(t, "-f", filepath.Join(chart(t), "values-ha.yaml"), "--set", "server.image.tag=X", "--set", "agent.image.tag=Y")
	d := must(t, objs, "Deployment/spire-server")
	if n, _ := get(d, "spec", "replicas").(int); n != 3 {
		t.Errorf("replicas = %v", get(d, "spec", "replicas"))
	}
	c := get(d, "spec", "template", "spec", "containers", 0)
	if !slices.Contains(toStrings(list(c, "args")), "-expandEnv") {
		t.Errorf("args %v", list(c, "args"))
	}
	ref := get(c, "env", 0, "valueFrom", "secretKeyRef")
	if str(c, "env", 0, "name") != "SPIRE_DATASTORE_CONNECTION_STRING" || str(ref, "name") != "spire-datastore" || str(ref, "key") != "connection-string" {
		t.Errorf("connection string env %v", get(c, "env"))
	}
	if str(c, "image") != "ghcr.io/neural-hive/spire-server:X" {
		t.Errorf("image %q", str(c, "image"))
	}
	if _, ok := objs["PersistentVolumeClaim/spire-server-data"]; ok {
		t.Error("HA servers keep no SQLite volume")
	}
	must(t, objs, "PodDisruptionBudget/spire-server")
	server := parseHCL(t, str(must(t, objs, "ConfigMap/spire-server"), "data", "server.conf"))
	sql := get(server, "plugins", 0, "DataStore", 0, "sql", 0, "plugin_data", 0)
	if str(sql, "database_type") != "postgres" || str(sql, "connection_string") != "${SPIRE_DATASTORE_CONNECTION_STRING}" {
		t.Errorf("datastore %v", sql)
	}
	must(t, objs, "DaemonSet/spire-agent")
}

func TestHelmTemplateRefusals(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "fail/replicas on sqlite", args: []string{"--set", "server.replicas=2"}, wantErr: "server.replicas > 1 needs datastore.type=postgres"},
		{name: "fail/postgres without secret", args: []string{"--set", "datastore.type=postgres"}, wantErr: "needs datastore.postgres.existingSecret"},
		{name: "fail/T5 cluster name with a slash", args: []string{"--set", "clusterName=a/b"}, wantErr: "clusterName"},
		{name: "fail/uppercase trust domain", args: []string{"--set", "trustDomain=Neural.Hive"}, wantErr: "trustDomain"},
		{name: "fail/own CA without its certificate", args: []string{"--set", "server.upstreamCA.existingSecret=my-ca"}, wantErr: "caCertificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, append([]string{"template", "spire", chart(t), "--namespace", ns, "--kube-version", kubeVersion}, tt.args...)...)
			if err == nil || !strings.Contains(out, tt.wantErr) {
				t.Fatalf("err %v, output:\n%s", err, out)
			}
		})
	}
}

func TestHelmTemplateMonitoring(t *testing.T) {
	objs := render(t, "--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.prometheusRule.enabled=true")
	for _, c := range []string{"spire-server", "spire-agent"} {
		pm := must(t, objs, "PodMonitor/"+c)
		ep := get(pm, "spec", "podMetricsEndpoints", 0)
		if str(pm, "spec", "selector", "matchLabels", "app") != c || str(ep, "port") != "metrics" ||
			str(ep, "relabelings", 0, "targetLabel") != "job" || str(ep, "relabelings", 0, "replacement") != c ||
			str(ep, "relabelings", 1, "targetLabel") != "node" {
			t.Errorf("PodMonitor %s: %v", c, pm["spec"])
		}
	}
	rule := must(t, objs, "PrometheusRule/spire")
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	gotY, _ := yaml.Marshal(get(rule, "spec", "groups"))
	wantY, _ := yaml.Marshal(want["groups"])
	if !bytes.Equal(gotY, wantY) {
		t.Errorf("PrometheusRule groups differ from deploy/prometheus/alerts.yaml:\n%s", gotY)
	}
	var names []string
	for _, r := range list(rule, "spec", "groups", 0, "rules") {
		names = append(names, str(r, "alert"))
	}
	for _, a := range []string{"SPIFFEAuthFailureRateHigh", "SPIFFESVIDExpirationSoon", "SPIREAgentDown"} {
		if !slices.Contains(names, a) {
			t.Errorf("runbook alert %s missing from %v", a, names)
		}
	}
}

// TestChartAlertsInSync keeps the chart's copy of the alert rules equal to
// deploy/prometheus/alerts.yaml (which promtool tests). No helm needed.
func TestChartAlertsInSync(t *testing.T) {
	a, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(chart(t), "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("helm-charts/spire/files/alerts.yaml differs from deploy/prometheus/alerts.yaml: copy it")
	}
}

func checkProbes(t *testing.T, c any) {
	t.Helper()
	if p := str(c, "livenessProbe", "httpGet", "path"); p != "/live" {
		t.Errorf("liveness path %q", p)
	}
	if p := str(c, "readinessProbe", "httpGet", "path"); p != "/ready" {
		t.Errorf("readiness path %q", p)
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if str(c, probe, "httpGet", "port") != "health" {
			t.Errorf("%s port %v", probe, get(c, probe, "httpGet", "port"))
		}
	}
	checkPort(t, c, "health", 8080)
}

func checkPort(t *testing.T, c any, name string, port int) {
	t.Helper()
	for _, p := range list(c, "ports") {
		if str(p, "name") == name {
			if get(p, "containerPort") != port {
				t.Errorf("port %s = %v, want %d", name, get(p, "containerPort"), port)
			}
			return
		}
	}
	t.Errorf("no container port %s", name)
}

func volume(workload object, name string) any {
	for _, v := range list(workload, "spec", "template", "spec", "volumes") {
		if str(v, "name") == name {
			return v
		}
	}
	return nil
}

func mountedAt(workload object, c any, vol, path string) bool {
	if volume(workload, vol) == nil {
		return false
	}
	for _, m := range list(c, "volumeMounts") {
		if str(m, "name") == vol && str(m, "mountPath") == path {
			return true
		}
	}
	return false
}

func wantRule(t *testing.T, role object, group, resource, verb string) {
	t.Helper()
	for _, r := range list(role, "rules") {
		if slices.Contains(toStrings(list(r, "apiGroups")), group) &&
			slices.Contains(toStrings(list(r, "resources")), resource) &&
			slices.Contains(toStrings(list(r, "verbs")), verb) {
			return
		}
	}
	t.Errorf("%s: no rule %s %q/%s", role.name(), verb, group, resource)
}

func toStrings(l []any) []string {
	out := make([]string, 0, len(l))
	for _, v := range l {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// parseHCL decodes a rendered configuration file as the server and agent
// read it (HCL v1); blocks decode as lists of maps.
func parseHCL(t *testing.T, text string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := hcl.Decode(&m, text); err != nil {
		t.Fatalf("rendered configuration is not HCL: %v\n%s", err, text)
	}
	// hcl gives []map[string]any for blocks; JSON round-trip to []any.
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// runBootstrap runs the rendered postStart script with a fake spire-server
// that records its arguments, and returns them.
func runBootstrap(t *testing.T, script string) [][]string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "spire-server")
	// One line per call, arguments separated by a unit separator.
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfirst=1\nfor a in \"$@\"; do if [ $first = 1 ]; then first=0; else printf '\\037' >> "+record+"; fi; printf '%s' \"$a\" >> "+record+"; done\necho >> "+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(script, "bin=/opt/spire/bin/spire-server", "bin="+fake, 1)
	if body == script {
		t.Fatal("bootstrap script does not call /opt/spire/bin/spire-server")
	}
	// Not this machine's PID 1: the script's log goes to a file here.
	body = strings.ReplaceAll(body, "/proc/1/fd/1", filepath.Join(dir, "log"))
	path := filepath.Join(dir, "bootstrap.sh")
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sh, path).CombinedOutput(); err != nil {
		t.Fatalf("bootstrap.sh: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]string
	for line := range strings.SplitSeq(strings.TrimSuffix(string(raw), "\n"), "\n") {
		calls = append(calls, strings.Split(line, "\x1f"))
	}
	return calls
}
