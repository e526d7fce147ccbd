package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// doctorFinding and doctorReport are `doctor -output json`.
type doctorFinding struct {
	Check      string `json:"check"`
	Status     string `json:"status"`
	Detail     string `json:"detail"`
	Resolution string `json:"resolution"`
}

type doctorReport struct {
	Findings []doctorFinding `json:"findings"`
	Summary  struct {
		Status         string `json:"status"`
		OK, Warn, Crit int
	} `json:"summary"`
	exit int
	raw  string
}

// find returns the first finding of check whose detail contains detail.
func (r *doctorReport) find(check, detail string) *doctorFinding {
	for i, f := range r.Findings {
		if f.Check == check && strings.Contains(f.Detail, detail) {
			return &r.Findings[i]
		}
	}
	return nil
}

func parseDoctor(tb testing.TB, stdout, stderr string, code int) *doctorReport {
	tb.Helper()
	r := &doctorReport{exit: code, raw: stdout}
	if err := json.Unmarshal([]byte(stdout), r); err != nil {
		tb.Fatalf("doctor output (exit %d): %v\n%s%s", code, err, stdout, stderr)
	}
	return r
}

// serverDoctor runs `spire-server doctor -output json` with args.
func (s *server) doctor(args ...string) *doctorReport {
	s.t.Helper()
	out, errOut, code := s.cli(append([]string{"doctor", "-output", "json"}, args...)...)
	return parseDoctor(s.t, out, errOut, code)
}

// doctor runs `spire-agent doctor -output json` with args.
func (a *agentProc) doctor(args ...string) *doctorReport {
	a.t.Helper()
	out, errOut, code := a.cli(append([]string{"doctor", "-output", "json"}, args...)...)
	return parseDoctor(a.t, out, errOut, code)
}

// assertClean fails unless the report is all OK with exit 0.
func assertClean(t *testing.T, who string, r *doctorReport) {
	t.Helper()
	if r.exit != 0 || r.Summary.Status != "OK" || r.Summary.Warn+r.Summary.Crit != 0 {
		t.Fatalf("%s doctor on a healthy plane: exit %d\n%s", who, r.exit, r.raw)
	}
}

// resolutionCommand returns the resolution line that starts with prefix, as argv.
func resolutionCommand(t *testing.T, f *doctorFinding, prefix string) []string {
	t.Helper()
	for line := range strings.SplitSeq(f.Resolution, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, prefix) {
			if strings.ContainsAny(line, `'"\`) {
				t.Fatalf("resolution command needs a shell: %s", line)
			}
			return strings.Fields(line)
		}
	}
	t.Fatalf("no %q command in the resolution:\n%s", prefix, f.Resolution)
	return nil
}

// TestDoctor_HealthyPlane: both doctors exit 0 with only OK findings on a
// plane whose workload has the runbook's entry (-ttl 3600), also when asked
// about a uid that may use the socket and for a JWT audience.
func TestDoctor_HealthyPlane(t *testing.T) {
	s, a := plane(t)
	id := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"
	s.createEntry("-spiffeID", id, "-parentID", agentAlias, "-selector", uidSelector, "-ttl", "3600")
	waitFor(t, "the workload's identity", 15*time.Second, func() bool {
		return a.doctor().exit == 0
	})

	r := s.doctor("-spiffeID", id, "-selector", uidSelector)
	assertClean(t, "server", r)
	for _, check := range []string{"server.health", "server.entries", "server.entry", "server.agents", "server.ca.x509", "server.ca.jwt"} {
		if r.find(check, "") == nil {
			t.Errorf("no %s finding:\n%s", check, r.raw)
		}
	}
	if r.find("server.agents", "1 attested agent, 1 renewing on time") == nil {
		t.Errorf("agents:\n%s", r.raw)
	}

	if err := os.Chmod(a.dir, 0o755); err != nil { // MkdirTemp made it 0700
		t.Fatal(err)
	}
	r = a.doctor("-audience", "spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/orchestrator-dynamic")
	assertClean(t, "agent", r)
	for _, want := range []struct{ check, detail string }{
		{"agent.socket", "can reach " + a.socket},
		{"agent.health", "Agent is healthy."},
		{"agent.identity", "gets 1 X509-SVID: " + id},
		{"agent.svid", id + " expires at "},
		{"agent.jwt", "(TTL 1h0m0s)"},
	} {
		if r.find(want.check, want.detail) == nil {
			t.Errorf("no %s finding with %q:\n%s", want.check, want.detail, r.raw)
		}
	}
	if os.Getuid() == 0 {
		assertClean(t, "agent -uid 65534", a.doctor("-uid", "65534"))
	}

	// Pretty output: one line per finding and the summary.
	out, _, code := s.cli("doctor")
	if code != 0 || !strings.HasPrefix(out, "OK    server.health: Server is healthy.\n") || !strings.HasSuffix(out, "0 WARN, 0 CRIT)\n") {
		t.Errorf("pretty server doctor (exit %d):\n%s", code, out)
	}
}

// TestDoctor_MissingEntry: the server doctor finds no entry for a SPIFFE ID
// and prints the runbook's entry create filled in; the agent doctor finds
// the caller has no identity. Running the printed commands fixes both.
func TestDoctor_MissingEntry(t *testing.T) {
	s, a := plane(t)
	id := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"

	r := s.doctor("-spiffeID", id)
	f := r.find("server.entry", "no entry for "+id)
	if r.exit != 1 || f == nil || f.Status != "CRIT" || !strings.HasPrefix(f.Resolution, "Se entry SPIFFE ausente: Recriar entry\n") {
		t.Fatalf("missing entry (exit %d):\n%s", r.exit, r.raw)
	}
	cmd := resolutionCommand(t, f, "spire-server entry create")
	want := "spire-server entry create -spiffeID " + id + " -parentID " + agentAlias +
		" -selector k8s:ns:neural-hive-execution -selector k8s:sa:worker-agents -ttl 3600 -socketPath " + s.socket
	if got := strings.Join(cmd, " "); got != want {
		t.Fatalf("resolution command\n got %s\nwant %s", got, want)
	}
	if out, errOut, code := run("", filepath.Join(binDir, "spire-server"), cmd[1:]...); code != 0 {
		t.Fatalf("running the resolution: %s %s", out, errOut)
	}
	r = s.doctor("-spiffeID", id)
	if r.exit != 0 || r.find("server.entry", "issues "+id) == nil {
		t.Fatalf("after the resolution (exit %d):\n%s", r.exit, r.raw)
	}

	// The entry above is for Kubernetes selectors: this process still has no identity.
	r = a.doctor()
	f = r.find("agent.identity", "no entry matches this workload's selectors")
	if r.exit != 1 || f == nil || f.Status != "CRIT" {
		t.Fatalf("agent doctor without an entry (exit %d):\n%s", r.exit, r.raw)
	}
	cmd = resolutionCommand(t, f, "spire-server entry create")
	for i, w := range cmd {
		w = strings.ReplaceAll(w, "<namespace>", "neural-hive-execution")
		cmd[i] = strings.ReplaceAll(w, "<service-account>", "doctor")
	}
	if got := strings.Join(cmd, " "); !strings.Contains(got, "-parentID "+agentAlias+" -selector "+uidSelector+" -ttl 3600") {
		t.Fatalf("agent resolution command: %s", got)
	}
	if _, errOut, code := s.cli(cmd[1:]...); code != 0 {
		t.Fatalf("running the agent's resolution: %s", errOut)
	}
	waitFor(t, "the agent doctor to pass after the entry is created", 15*time.Second, func() bool {
		return a.doctor().exit == 0
	})
}

// TestDoctor_SocketUnreachableForUID: after chmod 0700 of the socket
// directory, the agent doctor says uid 65534 cannot reach the socket, as
// the kernel does when that uid tries.
func TestDoctor_SocketUnreachableForUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test runs the CLI as another uid and needs root (CI runs as root)")
	}
	s, a := plane(t)
	for _, sel := range []string{"unix:uid:65534", uidSelector} {
		s.createEntry("-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents", "-parentID", agentAlias, "-selector", sel)
	}
	for _, d := range []string{a.dir, binDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fetchAsNobody := func() (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "spire-agent"), "api", "fetch", "x509", "-socketPath", a.socket)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if r := a.doctor("-uid", "65534"); r.exit != 0 || r.find("agent.socket", "uid 65534 (nobody) can reach") == nil {
		t.Fatalf("before chmod (exit %d):\n%s", r.exit, r.raw)
	}
	waitFor(t, "uid 65534 to get its SVID", 15*time.Second, func() bool {
		_, err := fetchAsNobody()
		return err == nil
	})

	sockDir := filepath.Dir(a.socket)
	if err := os.Chmod(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	r := a.doctor("-uid", "65534")
	f := r.find("agent.socket", "uid 65534 (nobody) cannot reach "+a.socket+": "+sockDir+" needs search (x) permission on the directory")
	if r.exit != 1 || f == nil || f.Status != "CRIT" {
		t.Fatalf("after chmod 0700 (exit %d):\n%s", r.exit, r.raw)
	}
	for _, want := range []string{"Socket Permission Denied", "1. Verificar permissoes do socket:\n  ls -la " + sockDir + "/\n",
		"3. Verificar securityContext do pod", "  chmod o+x " + sockDir} {
		if !strings.Contains(f.Resolution, want) {
			t.Errorf("resolution lacks %q:\n%s", want, f.Resolution)
		}
	}
	// The caller (root) is unaffected and the other checks still pass.
	if h := r.find("agent.health", "Agent is healthy."); h == nil || h.Status != "OK" {
		t.Errorf("health:\n%s", r.raw)
	}
	// The kernel agrees.
	out, err := fetchAsNobody()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(out, "permission denied") {
		t.Fatalf("fetch as uid 65534 after chmod 0700: %v %s", err, out)
	}

	// Running the printed fix restores access.
	cmd := resolutionCommand(t, f, "chmod")
	if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v %s", cmd, err, out)
	}
	if r := a.doctor("-uid", "65534"); r.exit != 0 {
		t.Fatalf("after the printed chmod (exit %d):\n%s", r.exit, r.raw)
	}
	if out, err := fetchAsNobody(); err != nil {
		t.Fatalf("fetch as uid 65534 after the fix: %v %s", err, out)
	}
}

// TestDoctor_SVIDExpiringSoon: an entry with a 30 s X.509 TTL is not
// flagged by -threshold 20 while it rotates at half-life; with the server
// stopped the SVID passes its renewal point and the doctor warns.
func TestDoctor_SVIDExpiringSoon(t *testing.T) {
	s, a := plane(t)
	id := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/short"
	s.createEntry("-spiffeID", id, "-parentID", agentAlias, "-selector", uidSelector, "-x509SVIDTTL", "30")
	waitFor(t, "the short-lived SVID", 15*time.Second, func() bool { return a.doctor().exit == 0 })

	// Healthy rotation across more than one renewal: never flagged.
	for range 4 {
		r := a.doctor("-threshold", "20")
		if r.exit != 0 || r.Summary.Status != "OK" || r.find("agent.svid", id) == nil {
			t.Fatalf("short TTL while rotating (exit %d):\n%s", r.exit, r.raw)
		}
		time.Sleep(5 * time.Second)
	}

	s.stop()
	var r *doctorReport
	waitFor(t, "the doctor to flag the SVID that was not renewed", 40*time.Second, func() bool {
		time.Sleep(500 * time.Millisecond)
		r = a.doctor("-threshold", "20")
		return r.find("agent.svid", "was not renewed") != nil
	})
	f := r.find("agent.svid", "was not renewed")
	if f.Status != "WARN" || r.exit != 0 || !strings.HasPrefix(f.Detail, id+" expires at ") ||
		!strings.Contains(f.Resolution, "Incident: X.509-SVID Expiration\n1. Verificar expiracao:\n  curl -s --unix-socket "+a.socket+" http://localhost/v1/spiffe/workload/x509svid | jq '.svids[0].expires_at'") {
		t.Fatalf("finding %+v (exit %d)", f, r.exit)
	}
	// The runbook's check from the resolution runs and shows the same SVID.
	out, errOut, code := run("", "/bin/sh", "-c", "curl -s --unix-socket "+a.socket+" http://localhost/v1/spiffe/workload/x509svid | jq -e '.svids[0].expires_at'")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("runbook curl|jq: %q %q %d", out, errOut, code)
	}
}

// TestDoctor_AgentDown: a stopped agent is critical for the agent doctor;
// the server doctor, told the agents' 30 s TTL, sees it miss its renewal
// and then expire, while a running agent is never flagged.
func TestDoctor_AgentDown(t *testing.T) {
	// agent_ttl is not supported: agents get default_x509_svid_ttl.
	s := newServer(t, serverOptions{extra: `    default_x509_svid_ttl = "30s"`})
	a := newAgent(t, s, s.token(agentAlias))
	s.createEntry("-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents", "-parentID", agentAlias, "-selector", uidSelector)
	waitFor(t, "the workload's identity", 15*time.Second, func() bool { return a.doctor().exit == 0 })

	for range 3 {
		r := s.doctor("-agentTTL", "30s", "-threshold", "20")
		if r.exit != 0 || r.find("server.agents", "1 attested agent, 1 renewing on time") == nil {
			t.Fatalf("running agent (exit %d):\n%s", r.exit, r.raw)
		}
		time.Sleep(5 * time.Second)
	}

	a.stop()
	r := a.doctor()
	down := r.find("agent.socket", "socket does not exist")
	if down == nil {
		down = r.find("agent.health", "agent does not answer")
	}
	if r.exit != 1 || down == nil || down.Status != "CRIT" ||
		!strings.Contains(down.Resolution, "Se SPIRE Agent down:\n  kubectl rollout restart daemonset/spire-agent -n spire-system") {
		t.Fatalf("agent doctor with the agent stopped (exit %d):\n%s", r.exit, r.raw)
	}

	var warned bool
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		r = s.doctor("-agentTTL", "30s", "-threshold", "20")
		if f := r.find("server.agent", "was not renewed at half-life"); f != nil && f.Status == "WARN" && r.exit == 0 {
			warned = true
		}
		if r.find("server.agent", "SVID expired at") != nil {
			break
		}
		if time.Now().After(deadline) {
			out, _, _ := s.cli("agent", "list")
			t.Fatalf("the server doctor did not see the agent's SVID expire in 60s:\n%s\n%s", r.raw, out)
		}
	}
	if !warned {
		t.Errorf("the server doctor never warned before the SVID expired")
	}
	f := r.find("server.agent", "SVID expired at")
	if r.exit != 1 || f.Status != "CRIT" || !strings.Contains(f.Resolution, "kubectl rollout restart daemonset/spire-agent -n spire-system") ||
		!strings.Contains(f.Resolution, "spire-server token generate -spiffeID "+agentAlias+" -socketPath "+s.socket) {
		t.Fatalf("expired agent (exit %d): %+v", r.exit, f)
	}
}
