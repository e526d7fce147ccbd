package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The runbook test runs docs/runbook.md as an operator would: every fenced
// bash block, in document order, against live local processes. Each
// command's kubectl exec prefix is stripped (the command then runs on the
// local server, agent or workload); the local paths of the runbook resolve
// in a working directory per plane (./bin, ./.data/server/api.sock and
// ./.data/upstream link to the test's binaries, admin socket and upstream
// CA; /run/spire/sockets/agent.sock and the health and metrics ports are
// rewritten to the agent's); placeholders are filled; shell variables set
// by one command are passed to the next. Each command must exit 0, and
// print what the following "Saida esperada" block says. What only
// Kubernetes (or the Flow C services of make run) can run is skipped, each
// with its reason in the test log, and its spire-system resource names are
// checked against helm-charts/spire.
//
// The runbook's waits are enforced, not slept: a "grep" that has not found
// its line yet is retried (propagation), an activate waits for the agent
// to hold the prepared authority, a revoke waits until every SVID the
// agent holds was issued after the taint.

// Placeholder values.
const (
	rbNamespace      = "neural-hive-runbook"
	rbServiceAccount = "runbook-check"
)

// rbBlock is a fenced block of the runbook.
type rbBlock struct {
	line    int    // 1-based line of the opening fence
	section string // the nearest heading
	part    string // "2a" / "2b" inside the root CA rotation, else ""
	lang    string
	expect  bool // a plain block under "Saida esperada"
	lines   []string
}

var (
	rbHeading = regexp.MustCompile(`^#{2,4} (.+)$`)
	rbPart    = regexp.MustCompile(`^\s*\*\*(2a|2b)\.`)
	rbFence   = regexp.MustCompile("^(\\s*)```(\\w*)\\s*$")
)

func parseRunbook(t *testing.T, text string) []rbBlock {
	t.Helper()
	var (
		blocks           []rbBlock
		section, part    string
		lastProse        string
		cur              *rbBlock
		indent           string
		lines            = strings.Split(text, "\n")
		closingFenceLine = func(l string) bool { return strings.TrimSpace(l) == "```" }
	)
	for i, l := range lines {
		if cur != nil {
			if closingFenceLine(l) {
				blocks = append(blocks, *cur)
				cur = nil
				continue
			}
			cur.lines = append(cur.lines, strings.TrimPrefix(l, indent))
			continue
		}
		if m := rbFence.FindStringSubmatch(l); m != nil {
			indent = m[1]
			cur = &rbBlock{line: i + 1, section: section, part: part, lang: m[2],
				expect: m[2] == "" && strings.Contains(lastProse, "Saida esperada")}
			continue
		}
		if m := rbHeading.FindStringSubmatch(l); m != nil {
			section, part = m[1], ""
		}
		if m := rbPart.FindStringSubmatch(l); m != nil {
			part = m[1]
		}
		if strings.TrimSpace(l) != "" {
			lastProse = l
		}
	}
	if cur != nil {
		t.Fatalf("runbook: fence opened at line %d is not closed", cur.line)
	}
	return blocks
}

// rbCmd is one shell command of a bash block.
type rbCmd struct {
	text string
	line int
	k8s  bool // under a "# Kubernetes" comment, or a kubectl/helm command
}

// commands splits a bash block into commands: comment lines are dropped
// (those naming "Kubernetes" or "Local" switch the form of what follows)
// and continuation lines are joined.
func (b rbBlock) commands() []rbCmd {
	var out []rbCmd
	mode := ""
	for i := 0; i < len(b.lines); i++ {
		l := strings.TrimSpace(b.lines[i])
		switch {
		case l == "":
			continue
		case strings.HasPrefix(l, "#"):
			// "# Kubernetes", "... Kubernetes:", "#     Local:"
			switch note := strings.TrimSpace(strings.TrimLeft(l, "#")); {
			case note == "Kubernetes" || strings.HasSuffix(note, "Kubernetes:"):
				mode = "k8s"
			case note == "Local" || strings.HasSuffix(note, "Local:"):
				mode = "local"
			}
			continue
		}
		start := i
		for strings.HasSuffix(l, `\`) && i+1 < len(b.lines) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(b.lines[i])
		}
		l = strings.Join(strings.Fields(l), " ")
		k8s := mode == "k8s" || strings.HasPrefix(l, "kubectl ") || strings.HasPrefix(l, "helm ")
		out = append(out, rbCmd{text: l, line: b.line + 1 + start, k8s: k8s})
	}
	return out
}

// rbPlane is a server and an agent, and the working directory where the
// runbook's relative paths resolve to them.
type rbPlane struct {
	name     string
	s        *server
	a        *agentProc
	dir      string
	upstream string // ./.data/upstream, with an UpstreamAuthority
}

// rbRun is the state of one run of the runbook.
type rbRun struct {
	t       *testing.T
	planes  map[string]*rbPlane
	cur     *rbPlane
	vars    map[string]string
	chart   chartIndex
	outputs []string // stdout of the commands since the last expected output
	taint   time.Time
	revoked map[string]bool // plane name -> an X.509 authority or upstream root was revoked
	ran     int
	skipped int
	checked int
}

func TestRunbook_Document(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"bash", "curl", "jq", "openssl", "grep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run the runbook: %v", tool, err)
		}
	}
	r := &rbRun{t: t, planes: map[string]*rbPlane{}, vars: map[string]string{}, revoked: map[string]bool{}, chart: loadChart(t)}
	r.cur = r.plane("self-signed")

	section := ""
	for _, b := range parseRunbook(t, string(raw)) {
		if b.section != section {
			section, r.outputs = b.section, nil
		}
		switch {
		case b.expect:
			r.checkExpected(b)
			continue
		case b.lang != "bash":
			continue
		}
		want := "self-signed"
		if b.part == "2a" {
			want = "upstream"
		}
		if r.cur.name != want {
			r.leave(r.cur)
			r.cur = r.plane(want)
		}
		for _, c := range b.commands() {
			r.step(c)
		}
	}
	t.Logf("runbook: ran %d commands, skipped %d (each listed above with its reason), checked %d expected outputs", r.ran, r.skipped, r.checked)
	if r.ran < 50 || r.checked < 4 {
		t.Errorf("ran %d commands and checked %d outputs: the runbook parser missed blocks", r.ran, r.checked)
	}
}

// plane returns the named plane, starting it on first use: "self-signed"
// (the server's own CA, as conf/server/server.conf) or "upstream" (an
// UpstreamAuthority "disk" in ./.data/upstream, as the chart).
func (r *rbRun) plane(name string) *rbPlane {
	t := r.t
	if p, ok := r.planes[name]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "hidrb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{".data/server", ".data/agent", ".data/logs", ".data/upstream"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(binDir, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	p := &rbPlane{name: name, dir: dir}
	opts := serverOptions{telemetry: true}
	if name == "upstream" {
		p.upstream = filepath.Join(dir, ".data", "upstream")
		writeUpstreamCA(t, p.upstream)
		opts.plugins = fmt.Sprintf(`    UpstreamAuthority "disk" {
        plugin_data {
            cert_file_path = %q
            key_file_path = %q
            bundle_file_path = %q
        }
    }`, filepath.Join(p.upstream, "tls.crt"), filepath.Join(p.upstream, "tls.key"), filepath.Join(p.upstream, "tls.crt"))
	}
	p.s = newServer(t, opts)
	p.a = newAgentWith(t, p.s, p.s.token(agentAlias), agentOptions{telemetry: true})
	if err := os.Symlink(p.s.socket, filepath.Join(dir, ".data", "server", "api.sock")); err != nil {
		t.Fatal(err)
	}
	// The runbook's entries, as make run creates them (this uid and the
	// path of each service's binary), and the operator's own identity (the
	// uid-only entry of "Se entry SPIFFE ausente", which the runbook's
	// local api fetch and doctor lines rely on).
	for _, svc := range []struct{ name, ns string }{
		{"service-registry", "neural-hive-execution"},
		{"orchestrator-dynamic", "neural-hive-orchestration"},
		{"worker-agents", "neural-hive-execution"},
		{"flowc-submit", "neural-hive-orchestration"},
	} {
		p.s.createEntry("-spiffeID", "spiffe://neural-hive.local/ns/"+svc.ns+"/sa/"+svc.name, "-parentID", agentAlias,
			"-selector", uidSelector, "-selector", "unix:path:"+filepath.Join(repoRoot(), "bin", svc.name), "-ttl", "3600")
	}
	p.s.createEntry("-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents", "-parentID", agentAlias,
		"-selector", uidSelector, "-ttl", "3600")
	waitFor(t, "the operator's SVID on the "+name+" plane", 20*time.Second, func() bool {
		_, _, code := p.a.cli("api", "fetch", "x509")
		return code == 0
	})
	t.Logf("plane %s: server %s, agent %s, working directory %s", name, p.s.socket, p.a.socket, dir)
	r.planes[name] = p
	return p
}

// leave checks the state a part of the runbook leaves a plane in: after
// the upstream root rotation (2a), the bundle holds only the new root and
// the agent is healthy.
func (r *rbRun) leave(p *rbPlane) {
	t := r.t
	if !r.revoked[p.name] {
		return
	}
	out, _, code := p.s.cli("bundle", "show")
	newRoot, err := os.ReadFile(filepath.Join(p.dir, "upstream-new.crt"))
	if code != 0 || err != nil || strings.Count(out, "BEGIN CERTIFICATE") != 1 || strings.TrimSpace(out) != strings.TrimSpace(string(newRoot)) {
		t.Errorf("after the %s rotation the bundle is not the new root alone (%v):\n%s", p.name, err, out)
	}
	if out, _, code := p.a.cli("healthcheck"); code != 0 || out != "Agent is healthy.\n" {
		t.Errorf("after the %s rotation the agent is unhealthy: %q", p.name, out)
	}
}

// writeUpstreamCA writes a self-signed EC P-256 root as tls.crt and tls.key,
// as the chart's generated Secret.
func writeUpstreamCA(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{"Neural Hive-Mind"}, CommonName: "neural-hive.local upstream CA (old)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
}

var (
	rbKubectlExec = regexp.MustCompile(`^kubectl exec -n (\S+) (\S+) -- (.*)$`)
	rbAssignment  = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	rbFlowCPort   = regexp.MustCompile(`(127\.0\.0\.1|localhost):909[0-2]\b`)
)

// step runs or skips one command.
func (r *rbRun) step(c rbCmd) {
	t := r.t
	cmd := c.text
	skip := func(reason string) {
		r.skipped++
		t.Logf("runbook:%d skip (%s): %s", c.line, reason, cmd)
	}
	if c.k8s {
		m := rbKubectlExec.FindStringSubmatch(cmd)
		if m == nil || strings.HasPrefix(cmd, "SERVER=") {
			skip("Kubernetes only; " + r.chart.check(t, c))
			return
		}
		ns, target, rest := m[1], m[2], m[3]
		switch {
		case ns == "spire-system":
			r.chart.mustHave(t, c, target)
		case target == "<pod-name>":
			// A workload pod: the test process is the local workload.
		default:
			t.Errorf("runbook:%d: kubectl exec into %s/%s, neither the chart nor a workload pod", c.line, ns, target)
		}
		cmd = strings.Replace(rest, "/opt/spire/bin/", "./bin/", 1)
		if strings.HasPrefix(cmd, "./bin/spire-server ") && !strings.Contains(cmd, "-socketPath") {
			// In the pod the server's admin socket is the default one.
			end := len(cmd)
			for _, sep := range []string{" | ", " > "} {
				if i := strings.Index(cmd, sep); i >= 0 && i < end {
					end = i
				}
			}
			cmd = cmd[:end] + " -socketPath ./.data/server/api.sock" + cmd[end:]
		}
	}
	switch {
	case strings.HasPrefix(cmd, "make "):
		skip("the test builds the binaries and starts the plane itself")
		return
	case strings.Contains(cmd, "spire-server run "):
		skip("the harness runs spire-server with its own ports and paths")
		return
	case strings.Contains(cmd, "spire-agent run ") && strings.Contains(cmd, "-joinToken"):
		skip("the harness runs spire-agent with its own ports and paths")
		return
	case strings.Contains(cmd, "spire-agent run "):
		// "Se SPIRE Agent down": a restart without a token reloads the stored SVID.
		r.cur.a.stop()
		r.cur.a.start("")
		r.ran++
		t.Logf("runbook:%d ran as a restart of the harness agent (no join token, stored SVID): %s", c.line, cmd)
		return
	case rbFlowCPort.MatchString(cmd) || strings.Contains(cmd, "service-registry.log"):
		skip("a Flow C service of make run, not started here; test/flowc checks these metrics and logs")
		return
	}
	cmd = r.fill(c, cmd)
	r.wait(c, cmd)
	if strings.Contains(cmd, ".data/logs/") {
		r.writeLogs()
	}
	out := r.exec(c, cmd)
	r.outputs = append(r.outputs, out)
	r.after(c, cmd, out)
}

// fill replaces placeholders and the runbook's fixed local endpoints with
// those of the current plane.
func (r *rbRun) fill(c rbCmd, cmd string) string {
	p := r.cur
	entryID, uid := "", ""
	if strings.Contains(cmd, "<uid>") {
		uid = r.serviceUID()
	}
	if strings.Contains(cmd, "<entry-id>") {
		entryID = r.entryIDFor(c, "spiffe://neural-hive.local/ns/"+rbNamespace+"/sa/"+rbServiceAccount)
	}
	return strings.NewReplacer(
		"<namespace>", rbNamespace,
		"<service-account>", rbServiceAccount,
		"<uid>", uid,
		"<entry-id>", entryID,
		"/run/spire/sockets/agent.sock", p.a.socket,
		"/run/spire/sockets/", filepath.Dir(p.a.socket)+"/",
		"127.0.0.1:8080", "127.0.0.1:"+strconv.Itoa(p.s.healthPort),
		"127.0.0.1:8082", "127.0.0.1:"+strconv.Itoa(p.a.healthPort),
		"127.0.0.1:9988", "127.0.0.1:"+strconv.Itoa(p.s.metricsPort),
		"localhost:9988", "127.0.0.1:"+strconv.Itoa(p.s.metricsPort),
		"127.0.0.1:9989", "127.0.0.1:"+strconv.Itoa(p.a.metricsPort),
		"localhost:9989", "127.0.0.1:"+strconv.Itoa(p.a.metricsPort),
	).Replace(cmd)
}

// serviceUID is the uid the socket permission steps check: nobody
// (65534), once the agent's directories let it through, as a service's
// uid would be.
func (r *rbRun) serviceUID() string {
	for _, d := range []string{r.cur.a.dir, filepath.Dir(r.cur.a.socket)} {
		if err := os.Chmod(d, 0o755); err != nil {
			r.t.Fatal(err)
		}
	}
	return "65534"
}

// entryIDFor returns the ID of an entry of spiffeID that still exists, as
// the operator reads it from `entry show`.
func (r *rbRun) entryIDFor(c rbCmd, spiffeID string) string {
	out, errOut, code := r.cur.s.cli("entry", "show", "-spiffeID", spiffeID)
	m := entryIDLine.FindStringSubmatch(out)
	if code != 0 || m == nil {
		r.t.Fatalf("runbook:%d: no entry of %s to fill <entry-id>: %s %s", c.line, spiffeID, out, errOut)
	}
	return m[1]
}

var (
	rbActivate = regexp.MustCompile(`localauthority (x509|jwt) activate`)
	rbRevoke   = regexp.MustCompile(`(localauthority x509|upstreamauthority) revoke`)
	rbTaint    = regexp.MustCompile(`(localauthority x509|upstreamauthority) taint`)
	rbCreate   = regexp.MustCompile(`spire-server entry create `)
)

// wait puts the plane in the state a command is written for: the runbook
// says to wait for propagation before activating and for renewal before
// revoking, and an entry create is the fix for an entry that is absent.
func (r *rbRun) wait(c rbCmd, cmd string) {
	t, p := r.t, r.cur
	if m := rbActivate.FindStringSubmatch(cmd); m != nil {
		metric := "spire_agent_bundle_" + m[1] + "_authorities"
		t.Logf("runbook:%d waiting, as the runbook says, until the agent holds the prepared authority (%s == 2)", c.line, metric)
		waitFor(t, metric+" == 2", 60*time.Second, func() bool {
			v, _ := sampleOf(scrapeExposition(t, p.a.metricsPort), metric, nil)
			return v >= 2
		})
	}
	if rbRevoke.MatchString(cmd) && !r.taint.IsZero() {
		// Every SVID the agent holds (workloads' and its own) issued after
		// the taint: its NotBefore is backdated by 10 s.
		t.Logf("runbook:%d waiting, as the runbook says, until every SVID was renewed after the taint", c.line)
		since := float64(r.taint.Unix()) - 10
		waitFor(t, "every SVID renewed after the taint", 90*time.Second, func() bool {
			smp := scrapeExposition(t, p.a.metricsPort)
			n := 0
			for _, s := range smp {
				if s.name != "spiffe_x509_svid_expiry_timestamp_seconds" {
					continue
				}
				ttl, _ := sampleOf(smp, "spiffe_x509_svid_ttl_seconds", s.labels)
				if s.value-ttl < since {
					return false
				}
				n++
			}
			return n > 0
		})
	}
	if rbCreate.MatchString(cmd) {
		r.makeAbsent(c, cmd)
	}
}

// makeAbsent deletes the entry a create command would duplicate (same
// SPIFFE ID, parent and selectors): the block is the fix for its absence.
func (r *rbRun) makeAbsent(c rbCmd, cmd string) {
	t := r.t
	// The shell splits the arguments as it will for the command.
	argv, errOut, code := r.shell("printf '%s\\n' " + strings.TrimPrefix(cmd, "./bin/spire-server "))
	if code != 0 {
		t.Fatalf("runbook:%d: splitting %q: %s", c.line, cmd, errOut)
	}
	var id, parent string
	var want []string
	args := strings.Split(strings.TrimSuffix(argv, "\n"), "\n")
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-spiffeID":
			id = args[i+1]
		case "-parentID":
			parent = args[i+1]
		case "-selector":
			want = append(want, args[i+1])
		}
	}
	if id == "" || parent == "" {
		return
	}
	show, _, _ := r.cur.s.cli("entry", "show", "-spiffeID", id, "-parentID", parent)
	for _, e := range strings.Split(show, "\n\n") {
		m := entryIDLine.FindStringSubmatch(e)
		if m == nil {
			continue
		}
		var got []string
		for _, l := range strings.Split(e, "\n") {
			if v, ok := strings.CutPrefix(l, "Selector         : "); ok {
				got = append(got, v)
			}
		}
		if sameStrings(got, want) {
			if _, errOut, code := r.cur.s.cli("entry", "delete", "-entryID", m[1]); code != 0 {
				t.Fatalf("deleting entry %s: %s", m[1], errOut)
			}
			t.Logf("runbook:%d precondition: entry %s %v deleted, the block recreates it", c.line, id, want)
		}
	}
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s] == 0 {
			return false
		}
		seen[s]--
	}
	return true
}

// shell runs a script with bash in the plane's directory, with the
// variables set so far, and returns stdout, stderr and the exit code.
func (r *rbRun) shell(script string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -o pipefail\n"+script)
	cmd.Dir = r.cur.dir
	cmd.Env = os.Environ()
	for k, v := range r.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return stdout.String(), stderr.String(), code
}

// exec runs one command: an assignment keeps its variable; a pipeline into
// grep that has not matched yet is retried (the runbook's "esperar"); any
// other failure fails the test. It returns the command's stdout.
func (r *rbRun) exec(c rbCmd, cmd string) string {
	t := r.t
	script := cmd
	name := ""
	if m := rbAssignment.FindStringSubmatch(cmd); m != nil {
		name = m[1]
		script = "set -e\n" + cmd + "\nprintf '%s' \"$" + name + "\""
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, errOut, code := r.shell(script)
		if code == 1 && strings.Contains(cmd, "| grep") && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		r.ran++
		if code != 0 {
			t.Errorf("runbook:%d: exit %d: %s\nstdout:\n%s\nstderr:\n%s", c.line, code, cmd, out, errOut)
			return out
		}
		if name != "" {
			if out == "" || out == "null" {
				t.Errorf("runbook:%d: %s is %q after: %s\nstderr:\n%s", c.line, name, out, cmd, errOut)
			}
			r.vars[name] = out
			t.Logf("runbook:%d ran: %s  (%s=%s)", c.line, cmd, name, out)
			return ""
		}
		if strings.Contains(cmd, "| jq") && strings.TrimSpace(out) == "null" {
			t.Errorf("runbook:%d: jq printed null: %s", c.line, cmd)
		}
		t.Logf("runbook:%d ran: %s", c.line, cmd)
		return out
	}
}

// after records what later steps depend on, and checks the counts the
// runbook states in its comments.
func (r *rbRun) after(c rbCmd, cmd, out string) {
	t := r.t
	switch {
	case rbTaint.MatchString(cmd):
		r.taint = time.Now()
	case rbRevoke.MatchString(cmd):
		r.revoked[r.cur.name] = true
	case strings.HasSuffix(cmd, `grep -c "BEGIN CERTIFICATE"`):
		// "o bundle do servidor tem as duas raizes (2)"
		if got := strings.TrimSpace(out); got != "2" {
			t.Errorf("runbook:%d: the bundle has %s roots during the rotation, the runbook says 2", c.line, got)
		}
	case r.revoked[r.cur.name] && strings.HasSuffix(cmd, "bundle show -socketPath ./.data/server/api.sock"):
		// "O bundle deve ter so a(s) raiz(es) nova(s)"
		if n := strings.Count(out, "BEGIN CERTIFICATE"); n != 1 {
			t.Errorf("runbook:%d: after the rotation the bundle has %d roots, the runbook says only the new one", c.line, n)
		}
	}
}

// writeLogs puts the processes' logs where the runbook's local grep reads them.
func (r *rbRun) writeLogs() {
	p := r.cur
	for name, text := range map[string]string{"spire-server.log": p.s.logs.String(), "spire-agent.log": p.a.logs.String()} {
		if err := os.WriteFile(filepath.Join(p.dir, ".data", "logs", name), []byte(text), 0o600); err != nil {
			r.t.Fatal(err)
		}
	}
}

// checkExpected compares a "Saida esperada" block with the stdout of every
// command run since the previous one in the same section.
func (r *rbRun) checkExpected(b rbBlock) {
	want := strings.TrimSpace(strings.Join(b.lines, "\n"))
	if len(r.outputs) == 0 {
		r.t.Errorf("runbook:%d: expected output %q follows no command that ran", b.line, want)
	}
	for _, got := range r.outputs {
		if strings.TrimSpace(got) != want {
			r.t.Errorf("runbook:%d: output %q, the runbook expects %q", b.line, strings.TrimSpace(got), want)
		}
	}
	r.checked++
	r.outputs = nil
}

// chartIndex is what helm-charts/spire defines: kinds and names of its
// resources (those with a literal name), the labels of the pod templates,
// the container ports and the value paths of values.yaml.
type chartIndex struct {
	resources map[string]bool // "deployment/spire-server"
	text      string          // all templates, for label and port checks
	values    string
}

func loadChart(t *testing.T) chartIndex {
	t.Helper()
	dir := filepath.Join(repoRoot(), "helm-charts", "spire")
	files, err := filepath.Glob(filepath.Join(dir, "templates", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("chart templates: %v", err)
	}
	idx := chartIndex{resources: map[string]bool{}}
	kindName := regexp.MustCompile(`(?m)^kind: (\w+)\s*\nmetadata:\s*\n  name: ([a-z0-9-]+)\s*$`)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		idx.text += string(raw) + "\n"
		for _, m := range kindName.FindAllStringSubmatch(string(raw), -1) {
			idx.resources[strings.ToLower(m[1])+"/"+m[2]] = true
		}
	}
	values, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	idx.values = string(values)
	for _, want := range []string{"deployment/spire-server", "daemonset/spire-agent"} {
		if !idx.resources[want] {
			t.Fatalf("chart index lacks %s: the template parser is wrong (%v)", want, idx.resources)
		}
	}
	return idx
}

// mustHave fails the test when the chart has no resource target ("kind/name").
func (ch chartIndex) mustHave(t *testing.T, c rbCmd, target string) {
	t.Helper()
	if !ch.resources[strings.ToLower(target)] {
		t.Errorf("runbook:%d: %s is not a resource of helm-charts/spire: %s", c.line, target, c.text)
	}
}

var (
	rbK8sTarget = regexp.MustCompile(`\b(deployment|daemonset)/([a-z0-9-]+)`)
	rbK8sGet    = regexp.MustCompile(`kubectl (?:get|create) (deployment|daemonset|secret|configmap)(?: tls| generic)?(?: -n \S+)? ([a-z0-9-]+)`)
	rbK8sLabel  = regexp.MustCompile(`-l app=([a-z0-9-]+)`)
	rbK8sNS     = regexp.MustCompile(`(?:-n|--namespace) (\S+)`)
	rbPortFwd   = regexp.MustCompile(`port-forward -n spire-system \S+ \d+:(\d+)`)
	rbHelmSet   = regexp.MustCompile(`--set ([a-zA-Z.]+)=`)
)

// check verifies the spire-system names of a Kubernetes-only command
// against the chart and returns what was checked.
func (ch chartIndex) check(t *testing.T, c rbCmd) string {
	t.Helper()
	cmd := c.text
	ns := ""
	if m := rbK8sNS.FindStringSubmatch(cmd); m != nil {
		ns = m[1]
	}
	if ns != "" && ns != "spire-system" {
		return "the " + ns + " namespace holds Flow C workloads, not part of helm-charts/spire"
	}
	var checked []string
	for _, m := range rbK8sTarget.FindAllStringSubmatch(cmd, -1) {
		ch.mustHave(t, c, m[1]+"/"+m[2])
		checked = append(checked, m[1]+"/"+m[2])
	}
	if m := rbK8sGet.FindStringSubmatch(cmd); m != nil {
		ch.mustHave(t, c, m[1]+"/"+m[2])
		checked = append(checked, m[1]+"/"+m[2])
	}
	if m := rbK8sLabel.FindStringSubmatch(cmd); m != nil {
		if !strings.Contains(ch.text, "app: "+m[1]) {
			t.Errorf("runbook:%d: no pod of the chart has label app=%s", c.line, m[1])
		}
		checked = append(checked, "label app="+m[1])
	}
	if m := rbPortFwd.FindStringSubmatch(cmd); m != nil {
		if !strings.Contains(ch.text, "containerPort: "+m[1]) {
			t.Errorf("runbook:%d: no container of the chart listens on %s", c.line, m[1])
		}
		checked = append(checked, "containerPort "+m[1])
	}
	if strings.HasPrefix(cmd, "helm ") {
		if !strings.Contains(cmd, "./helm-charts/spire") {
			t.Errorf("runbook:%d: helm does not use ./helm-charts/spire: %s", c.line, cmd)
		}
		for _, m := range rbHelmSet.FindAllStringSubmatch(cmd, -1) {
			if !valuesHave(ch.values, m[1]) {
				t.Errorf("runbook:%d: values.yaml has no %s", c.line, m[1])
			}
			checked = append(checked, "value "+m[1])
		}
	}
	if len(checked) == 0 {
		return "no chart name to check"
	}
	return "chart has " + strings.Join(checked, ", ")
}

// valuesHave reports whether values.yaml has the dotted key path (two
// levels of two-space indentation are enough for the chart's keys).
func valuesHave(values, path string) bool {
	keys := strings.Split(path, ".")
	indent := ""
	pos := 0
	for _, k := range keys {
		re := regexp.MustCompile(`(?m)^` + indent + regexp.QuoteMeta(k) + `:`)
		loc := re.FindStringIndex(values[pos:])
		if loc == nil {
			return false
		}
		pos += loc[1]
		indent += "  "
	}
	return true
}
