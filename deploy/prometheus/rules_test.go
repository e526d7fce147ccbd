// Package prometheus_test checks the shipped Prometheus files with the real
// promtool: the alert rules (check rules), their unit tests (test rules),
// the example scrape configuration (check config), and the text both
// metric sets expose (check metrics). promtool is built by promtooltest
// from the separate module in tools/promtool, so this module never depends
// on prometheus/prometheus; the binary is kept in the user cache directory
// after the first build.
package prometheus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/neural-hive/hive-identity/deploy/prometheus/promtooltest"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// promtool runs promtool with args (and stdin) from this directory and
// fails the test with its output if it exits non-zero.
func promtool(t *testing.T, bin string, stdin io.Reader, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("promtool %s: exit %d\n%s", strings.Join(args, " "), ee.ExitCode(), out)
		}
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtool(t *testing.T) {
	bin := promtooltest.Build(t, filepath.Join("..", "..", "tools", "promtool"))

	t.Run("ok/check_rules", func(t *testing.T) {
		out := promtool(t, bin, nil, "check", "rules", "alerts.yaml")
		if !strings.Contains(out, "SUCCESS: 5 rules found") {
			t.Errorf("check rules output:\n%s", out)
		}
	})
	t.Run("ok/test_rules", func(t *testing.T) {
		out := promtool(t, bin, nil, "test", "rules", "alerts_test.yaml")
		if !strings.Contains(out, "SUCCESS") {
			t.Errorf("test rules output:\n%s", out)
		}
	})
	t.Run("ok/check_config", func(t *testing.T) {
		promtool(t, bin, nil, "check", "config", "--syntax-only", "scrape.yaml")
	})
	t.Run("ok/check_metrics", func(t *testing.T) {
		text := scrapePopulated(t)
		for _, want := range []string{
			"spiffe_x509_svid_expiration_seconds{spiffe_id=",
			"spiffe_x509_svid_ttl_seconds{spiffe_id=",
			"spire_agent_attestation_errors_total{attestor=",
			"spire_server_entries ",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("scrape lacks %q", want)
			}
		}
		promtool(t, bin, strings.NewReader(text), "check", "metrics")
	})
	t.Run("ok/dashboard_queries_parse", func(t *testing.T) {
		// promtool has no offline query parser; recording rules made of the
		// dashboard's queries get their PromQL checked by check rules.
		var b strings.Builder
		b.WriteString("groups:\n- name: dashboard\n  rules:\n")
		for i, expr := range dashboardExprs(t) {
			q, _ := json.Marshal(expr) // a JSON string is a YAML string
			fmt.Fprintf(&b, "  - record: dashboard:query_%d\n    expr: %s\n", i, q)
		}
		f := filepath.Join(t.TempDir(), "dashboard_rules.yaml")
		if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		promtool(t, bin, nil, "check", "rules", f)
	})
	t.Run("fail/broken_rule_is_refused", func(t *testing.T) {
		// The checks above would prove nothing if promtool accepted anything.
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: up{job=\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(t.Context(), bin, "check", "rules", bad).CombinedOutput()
		if err == nil {
			t.Fatalf("promtool accepted a broken rule:\n%s", out)
		}
	})
}

// scrapePopulated serves a registry holding both metric sets, every metric
// with a sample, on a loopback exporter and returns one scrape.
func scrapePopulated(t *testing.T) string {
	t.Helper()
	now := time.Now()
	reg := telemetry.NewRegistry()
	s, err := telemetry.NewServerMetrics(reg, telemetry.ServerSources{
		Entries:         func() int { return 37 },
		Agents:          func() int { return 5 },
		PushSubscribers: func() int { return 5 },
		Authorities: func() []telemetry.Authority {
			return []telemetry.Authority{
				{Type: telemetry.AuthorityX509, Status: telemetry.AuthorityActive, ExpiresAt: now.Add(20 * time.Hour), TTL: 24 * time.Hour},
				{Type: telemetry.AuthorityJWT, Status: telemetry.AuthorityActive, ExpiresAt: now.Add(20 * time.Hour), TTL: 24 * time.Hour},
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := telemetry.NewAgentMetrics(reg, telemetry.AgentSources{
		SVIDs: func() []telemetry.SVID {
			return []telemetry.SVID{{
				SPIFFEID:  "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents",
				NotBefore: now.Add(-10 * time.Second), NotAfter: now.Add(time.Hour),
			}}
		},
		CacheEntries: func() int { return 3 },
		CacheSVIDs:   func() int { return 3 },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.NodeAttestation("join_token", nil)
	s.NodeAttestation("join_token", errors.New("join token does not exist or has already been used"))
	s.SVIDsIssued(telemetry.SVIDTypeX509, 3)
	s.SVIDsIssued(telemetry.SVIDTypeJWT, 1)
	s.ObserveDatastoreOp("create_entry", 3*time.Millisecond)
	if _, err := s.UnaryServerInterceptor()(t.Context(), nil,
		&grpc.UnaryServerInfo{FullMethod: "/spire.api.server.entry.v1.Entry/ListEntries"},
		func(context.Context, any) (any, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	a.NodeAttestationFailed("join_token", telemetry.ReasonRejected)
	a.WorkloadAttestationFailed("unix", telemetry.ReasonNoIdentity)
	a.SetAgentSVID(now, now.Add(time.Hour))
	a.SyncCompleted(4, now)
	a.ObservePropagation(20 * time.Millisecond)
	a.WorkloadAPIConnOpened()
	a.WorkloadAPICall("x509svid_http", "OK")

	e, err := telemetry.New(telemetry.Config{Host: "127.0.0.1", Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("exporter Run: %v", err)
		}
	}()
	select {
	case <-e.Ready():
	case err := <-done:
		t.Fatalf("exporter Run: %v", err)
	}
	resp, err := http.Get("http://" + e.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, buf.String())
	}
	return buf.String()
}

// dashboardExprs returns every query of the Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "grafana", "hive-identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) == 0 {
		t.Fatal("dashboard has no queries")
	}
	return exprs
}

var hiveMetricName = regexp.MustCompile(`\b(?:spire|spiffe)_[a-z0-9_]+\b`)

// TestReferencedMetricsExist checks that every spire_* and spiffe_* name the
// alert rules, their tests and the dashboard use is a metric the server or
// agent exports (with its _bucket/_sum/_count series for histograms), so a
// renamed metric cannot leave a rule silently matching nothing.
func TestReferencedMetricsExist(t *testing.T) {
	exported := map[string]bool{}
	for _, line := range strings.Split(scrapePopulated(t), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			exported[f[2]] = true
			if f[3] == "histogram" {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					exported[f[2]+suffix] = true
				}
			}
		}
	}
	sources := map[string]string{}
	for _, f := range []string{"alerts.yaml", "alerts_test.yaml"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources[f] = string(raw)
	}
	sources["hive-identity.json"] = strings.Join(dashboardExprs(t), "\n")
	for name, text := range sources {
		var missing []string
		for _, m := range hiveMetricName.FindAllString(text, -1) {
			if m == "spiffe_id" { // the label, not a metric
				continue
			}
			if !exported[m] && !slices.Contains(missing, m) {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s uses metrics no process exports: %v", name, missing)
		}
	}
}

// TestRunbookAlertsMatchRules checks that the rules printed in
// docs/runbook.md ("Alertas Recomendados") are the shipped alerts.yaml,
// comments and blank lines aside, so operators read what Prometheus runs.
func TestRunbookAlertsMatchRules(t *testing.T) {
	runbook, err := os.ReadFile(filepath.Join("..", "..", "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(runbook), "### Alertas Recomendados")
	if !ok {
		t.Fatal(`runbook has no "### Alertas Recomendados" section`)
	}
	_, block, ok := strings.Cut(after, "```yaml\n")
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatal("no yaml block under Alertas Recomendados")
	}
	if got, want := significant(block), significant(string(rules)); got != want {
		t.Errorf("runbook alerts differ from alerts.yaml:\n--- runbook\n%s\n--- alerts.yaml\n%s", got, want)
	}
}

// significant drops comment and blank lines.
func significant(text string) string {
	var keep []string
	for _, line := range strings.Split(text, "\n") {
		if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
			keep = append(keep, strings.TrimRight(line, " "))
		}
	}
	return strings.Join(keep, "\n")
}
