package cli

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/neural-hive/hive-identity/internal/doctor"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// Extension: `spire-server doctor` runs the diagnosis of the operations
// runbook against the admin socket and prints each finding with the
// runbook's resolution (in the runbook's language, Portuguese).

const doctorSynopsis = "Extension: diagnoses the server as the runbook does and prints each finding with its resolution"

// runbookTTL is the SVID TTL of the runbook's `entry create -ttl 3600` and
// its alert threshold for X.509-SVID expiry.
const runbookTTL = 3600 * time.Second

// durationFlag is a duration given in seconds ("3600") or as a Go duration ("1h").
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(v string) error {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		*d = durationFlag(time.Duration(n) * time.Second)
		return nil
	}
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want seconds or a duration such as 1h: %w", err)
	}
	*d = durationFlag(x)
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellLine joins words into one shell command line; words written as
// "<placeholder>" stay unquoted so the operator sees what to fill in.
func shellLine(words ...string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if strings.HasPrefix(w, "<") && strings.HasSuffix(w, ">") || strings.Contains(w, ":<") || strings.Contains(w, "/<") {
			out[i] = w
			continue
		}
		out[i] = shellQuote(w)
	}
	return strings.Join(out, " ")
}

// serverDoctor holds the flags of `doctor` and runs its checks.
type serverDoctor struct {
	e          *env
	socketPath string
	spiffeID   string
	selectors  stringsFlag
	parentID   string
	threshold  durationFlag
	agentTTL   durationFlag
	timeout    durationFlag
	output     *outputFlag
}

func setupDoctor(fs *flag.FlagSet, e *env) func(ctx context.Context) int {
	d := &serverDoctor{e: e, threshold: durationFlag(runbookTTL), agentTTL: durationFlag(time.Hour), timeout: durationFlag(10 * time.Second)}
	fs.StringVar(&d.socketPath, "socketPath", defaultSocketPath, "Path of the server's admin API unix socket")
	fs.StringVar(&d.spiffeID, "spiffeID", "", "Check that an entry issues this SPIFFE ID")
	fs.Var(&d.selectors, "selector", "Check that an entry matches a workload with these selectors (type:value); repeat for more")
	fs.StringVar(&d.parentID, "parentID", "", "Parent ID used in the suggested entry create command; default the runbook's agent alias spiffe://<td>/ns/spire-system/sa/spire-agent")
	fs.Var(&d.threshold, "threshold", "Flag agent SVIDs and CAs with less than this left (seconds or a duration); agent SVIDs only once past their renewal point")
	fs.Var(&d.agentTTL, "agentTTL", "Lifetime of agent SVIDs on this server (agent_ttl, else default_x509_svid_ttl), which sets their renewal point")
	fs.Var(&d.timeout, "timeout", "How long to wait for each answer of the server")
	d.output = addOutputFlag(fs)
	return func(ctx context.Context) int {
		c, err := dial(d.socketPath)
		if err != nil {
			_ = e.errorf("Error: %s\n", err)
			return 1
		}
		defer c.close()
		report := doctor.NewReport(d.run(ctx, c))
		if d.output.json {
			err = report.WriteJSON(e.stdout)
		} else {
			err = report.WritePretty(e.stdout)
		}
		if err != nil {
			_ = e.errorf("Error: %s\n", err)
			return 1
		}
		return report.ExitCode()
	}
}

// call bounds one RPC by -timeout.
func (d *serverDoctor) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(d.timeout))
}

// cmd is a spire-server command line for a resolution, with -socketPath
// when it is not the default.
func (d *serverDoctor) cmd(words ...string) string {
	line := shellLine(append([]string{"spire-server"}, words...)...)
	if d.socketPath != defaultSocketPath {
		line += " -socketPath " + shellQuote(d.socketPath)
	}
	return line
}

// run runs every check; when the server does not answer, the others are skipped.
func (d *serverDoctor) run(ctx context.Context, c *client) []doctor.Finding {
	health, reachable := d.checkHealth(ctx, c)
	findings := []doctor.Finding{health}
	if !reachable {
		return findings
	}
	td := d.trustDomain(ctx, c)
	findings = append(findings, d.checkEntries(ctx, c, td)...)
	findings = append(findings, d.checkAgents(ctx, c, td)...)
	findings = append(findings, d.checkAuthorities(ctx, c)...)
	return findings
}

func (d *serverDoctor) checkHealth(ctx context.Context, c *client) (doctor.Finding, bool) {
	f := doctor.Finding{Check: "server.health"}
	cctx, cancel := d.call(ctx)
	defer cancel()
	resp, err := c.health().Check(cctx, &grpc_health_v1.HealthCheckRequest{})
	switch {
	case err != nil:
		f.Status, f.Detail = doctor.Crit, fmt.Sprintf("server does not answer on %s: %v", d.socketPath, err)
	case resp.Status != grpc_health_v1.HealthCheckResponse_SERVING:
		f.Status, f.Detail = doctor.Crit, fmt.Sprintf("server reports %s", resp.Status)
	default:
		return doctor.Finding{Check: f.Check, Status: doctor.OK, Detail: "Server is healthy."}, true
	}
	f.Resolution = "Verificar Saude do SPIRE Server:\n" +
		"  " + d.cmd("healthcheck", "-verbose") + "\n" +
		"Verificar logs do servidor e reinicia-lo se necessario:\n" +
		"  kubectl logs -n spire-system deployment/spire-server --tail=100\n" +
		"  kubectl rollout restart deployment/spire-server -n spire-system\n" +
		"Fora do Kubernetes: spire-server run -config <server.conf>"
	return f, err == nil
}

// trustDomain is the server's trust domain, from its bundle; the ID given
// with -spiffeID wins.
func (d *serverDoctor) trustDomain(ctx context.Context, c *client) string {
	if id, err := spiffeid.FromString(d.spiffeID); err == nil {
		return id.TrustDomain().Name()
	}
	cctx, cancel := d.call(ctx)
	defer cancel()
	if b, err := c.bundle().GetBundle(cctx, &bundlev1.GetBundleRequest{OutputMask: &types.BundleMask{}}); err == nil && b.TrustDomain != "" {
		return b.TrustDomain
	}
	return "<trust-domain>"
}

func (d *serverDoctor) checkEntries(ctx context.Context, c *client, td string) []doctor.Finding {
	count := doctor.Finding{Check: "server.entries"}
	cctx, cancel := d.call(ctx)
	resp, err := c.entry().CountEntries(cctx, &entryv1.CountEntriesRequest{})
	cancel()
	switch {
	case err != nil:
		count.Status, count.Detail = doctor.Crit, fmt.Sprintf("could not count entries: %v", err)
	case resp.Count == 0:
		count.Status, count.Detail = doctor.Warn, "no registration entries: no workload can get an identity"
		count.Resolution = "Criar Nova Entry SPIFFE:\n  " + d.cmd("entry", "create",
			"-spiffeID", "spiffe://"+td+"/ns/<namespace>/sa/<service-account>",
			"-parentID", d.defaultParent(td),
			"-selector", "k8s:ns:<namespace>", "-selector", "k8s:sa:<service-account>", "-ttl", "3600")
	default:
		count.Status, count.Detail = doctor.OK, fmt.Sprintf("%d registration %s", resp.Count, plural(int(resp.Count), "entry", "entries"))
	}
	findings := []doctor.Finding{count}
	if d.spiffeID != "" || len(d.selectors) > 0 {
		findings = append(findings, d.checkEntry(ctx, c, td))
	}
	return findings
}

func (d *serverDoctor) defaultParent(td string) string {
	if d.parentID != "" {
		return d.parentID
	}
	return "spiffe://" + td + "/ns/spire-system/sa/spire-agent"
}

// checkEntry looks for an entry issuing -spiffeID to a workload with the
// -selector set: the entry's selectors must be a subset of the given ones,
// as when the agent matches a workload.
func (d *serverDoctor) checkEntry(ctx context.Context, c *client, td string) doctor.Finding {
	f := doctor.Finding{Check: "server.entry"}
	var what []string
	filter := &entryv1.ListEntriesRequest_Filter{}
	if d.spiffeID != "" {
		id, err := protoID(d.spiffeID)
		if err != nil {
			f.Status, f.Detail = doctor.Crit, fmt.Sprintf("invalid -spiffeID %q: %v", d.spiffeID, err)
			return f
		}
		filter.BySpiffeId = id
		what = append(what, d.spiffeID)
	}
	var selectors []*types.Selector
	if len(d.selectors) > 0 {
		var err error
		if selectors, err = parseSelectors(d.selectors); err != nil {
			f.Status, f.Detail = doctor.Crit, err.Error()
			return f
		}
		filter.BySelectors = &types.SelectorMatch{Selectors: selectors, Match: types.SelectorMatch_MATCH_SUBSET}
		what = append(what, "selectors ["+strings.Join(d.selectors, " ")+"]")
	}
	subject := strings.Join(what, " with ")
	found, err := d.listEntries(ctx, c, filter)
	if err != nil {
		f.Status, f.Detail = doctor.Crit, fmt.Sprintf("could not list entries for %s: %v", subject, err)
		return f
	}
	if len(found) > 0 {
		e := found[0]
		f.Status = doctor.OK
		f.Detail = fmt.Sprintf("entry %s issues %s to [%s] under %s", e.Id, idString(e.SpiffeId), selectorList(e.Selectors), idString(e.ParentId))
		if len(found) > 1 {
			f.Detail += fmt.Sprintf(" (and %d more)", len(found)-1)
		}
		return f
	}
	f.Status = doctor.Crit
	f.Detail = "no entry for " + subject
	parent := d.parentID
	if d.spiffeID != "" && len(selectors) > 0 {
		// Entries for the ID whose selectors do not match say which parent to keep.
		if others, err := d.listEntries(ctx, c, &entryv1.ListEntriesRequest_Filter{BySpiffeId: filter.BySpiffeId}); err == nil && len(others) > 0 {
			f.Detail += fmt.Sprintf("; %s has %d %s with other selectors, e.g. [%s]", d.spiffeID, len(others),
				plural(len(others), "entry", "entries"), selectorList(others[0].Selectors))
			if parent == "" {
				parent = idString(others[0].ParentId)
			}
		}
	}
	if parent == "" {
		parent = d.defaultParent(td)
	}
	f.Resolution = "Se entry SPIFFE ausente: Recriar entry\n  " + d.cmd(d.entryCreateArgs(td, parent)...)
	return f
}

func (d *serverDoctor) listEntries(ctx context.Context, c *client, filter *entryv1.ListEntriesRequest_Filter) ([]*types.Entry, error) {
	cctx, cancel := d.call(ctx)
	defer cancel()
	resp, err := c.entry().ListEntries(cctx, &entryv1.ListEntriesRequest{Filter: filter, PageSize: 100,
		OutputMask: &types.EntryMask{SpiffeId: true, ParentId: true, Selectors: true}})
	if err != nil {
		return nil, err
	}
	return resp.Entries, nil
}

// k8sIDPath matches the runbook's SPIFFE ID layout.
var k8sIDPath = regexp.MustCompile(`^/ns/([^/]+)/sa/([^/]+)$`)

// entryCreateArgs fills the runbook's `entry create` with what was asked:
// the SPIFFE ID, else one built from k8s:ns and k8s:sa selectors; the
// selectors, else the k8s ones the runbook's ID layout implies.
func (d *serverDoctor) entryCreateArgs(td, parent string) []string {
	spiffeID := d.spiffeID
	selectors := []string(d.selectors)
	if spiffeID == "" {
		ns, sa := "<namespace>", "<service-account>"
		for _, s := range selectors {
			if v, ok := strings.CutPrefix(s, "k8s:ns:"); ok {
				ns = v
			}
			if v, ok := strings.CutPrefix(s, "k8s:sa:"); ok {
				sa = v
			}
		}
		spiffeID = "spiffe://" + td + "/ns/" + ns + "/sa/" + sa
	}
	if len(selectors) == 0 {
		selectors = []string{"<type>:<value>"}
		if id, err := spiffeid.FromString(spiffeID); err == nil {
			if m := k8sIDPath.FindStringSubmatch(id.Path()); m != nil {
				selectors = []string{"k8s:ns:" + m[1], "k8s:sa:" + m[2]}
			}
		}
	}
	args := []string{"entry", "create", "-spiffeID", spiffeID, "-parentID", parent}
	for _, s := range selectors {
		args = append(args, "-selector", s)
	}
	return append(args, "-ttl", "3600")
}

func selectorList(sels []*types.Selector) string {
	out := make([]string, len(sels))
	for i, s := range sels {
		out[i] = s.Type + ":" + s.Value
	}
	return strings.Join(out, " ")
}

// checkAgents flags banned agents, agents whose SVID expired (down, or
// unable to renew) and agents past their renewal point with less than
// -threshold left (not syncing with the server).
func (d *serverDoctor) checkAgents(ctx context.Context, c *client, td string) []doctor.Finding {
	var agents []*types.Agent
	token := ""
	for {
		cctx, cancel := d.call(ctx)
		page, err := c.agent().ListAgents(cctx, &agentv1.ListAgentsRequest{PageSize: listAgentsPageSize, PageToken: token,
			OutputMask: &types.AgentMask{AttestationType: true, X509SvidExpiresAt: true, Banned: true, CanReattest: true}})
		cancel()
		if err != nil {
			return []doctor.Finding{{Check: "server.agents", Status: doctor.Crit, Detail: fmt.Sprintf("could not list agents: %v", err)}}
		}
		agents = append(agents, page.Agents...)
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	now := d.e.clock()
	var findings []doctor.Finding
	current := 0
	for _, a := range agents {
		if f, ok := d.judgeAgent(a, td, now); ok {
			findings = append(findings, f)
		} else {
			current++
		}
	}
	summary := doctor.Finding{Check: "server.agents", Status: doctor.OK,
		Detail: fmt.Sprintf("%d attested %s, %d renewing on time", len(agents), plural(len(agents), "agent", "agents"), current)}
	if len(agents) == 0 {
		summary.Status, summary.Detail = doctor.Warn, "no attested agents: no workload can get an identity"
		summary.Resolution = "Verificar se SPIRE Agent esta rodando:\n" +
			"  kubectl get pods -n spire-system -l app=spire-agent\n" +
			"Se SPIRE Agent down:\n" +
			"  kubectl rollout restart daemonset/spire-agent -n spire-system\n" +
			"Fora do Kubernetes, atestar um agent com um join token:\n" +
			"  " + d.cmd("token", "generate", "-spiffeID", "spiffe://"+td+"/ns/spire-system/sa/spire-agent") + "\n" +
			"  spire-agent run -config <agent.conf> -joinToken <token>"
	}
	return append([]doctor.Finding{summary}, findings...)
}

// judgeAgent returns a finding for an agent that needs attention.
func (d *serverDoctor) judgeAgent(a *types.Agent, td string, now time.Time) (doctor.Finding, bool) {
	id := idString(a.Id)
	f := doctor.Finding{Check: "server.agent"}
	expires := time.Unix(a.X509SvidExpiresAt, 0)
	if a.Banned {
		f.Status = doctor.Warn
		f.Detail = fmt.Sprintf("agent %s is banned: it gets no SVIDs and may not attest again", id)
		f.Resolution = "Se o ban nao foi intencional, remover o registro do agent (ele pode atestar de novo) e reinicia-lo:\n" +
			"  " + d.cmd("agent", "evict", "-spiffeID", id) + "\n" +
			"  kubectl rollout restart daemonset/spire-agent -n spire-system"
		return f, true
	}
	restart := "Verificar se SPIRE Agent esta rodando:\n" +
		"  kubectl get pods -n spire-system -l app=spire-agent\n" +
		"Se SPIRE Agent down:\n" +
		"  kubectl rollout restart daemonset/spire-agent -n spire-system"
	switch doctor.ExpiryStatus(expires, time.Duration(d.agentTTL), time.Duration(d.threshold), now) {
	case doctor.Crit:
		f.Status = doctor.Crit
		f.Detail = fmt.Sprintf("agent %s (%s): SVID expired at %s; the agent is down or cannot reach the server", id, a.AttestationType, expires.UTC().Format(time.RFC3339))
		f.Resolution = restart
		if !a.CanReattest {
			f.Resolution += "\nO SVID expirado nao pode ser renovado e o atestado (" + a.AttestationType + ") nao se repete: gerar um novo token, reiniciar o agent com ele e remover o registro antigo:\n" +
				"  " + d.cmd("token", "generate", "-spiffeID", "spiffe://"+td+"/ns/spire-system/sa/spire-agent") + "\n" +
				"  spire-agent run -config <agent.conf> -joinToken <token>\n" +
				"  " + d.cmd("agent", "evict", "-spiffeID", id)
		}
		return f, true
	case doctor.Warn:
		f.Status = doctor.Warn
		f.Detail = fmt.Sprintf("agent %s (%s): SVID expires at %s (in %s) and was not renewed at half-life; the agent has not synced with the server",
			id, a.AttestationType, expires.UTC().Format(time.RFC3339), expires.Sub(now).Round(time.Second))
		f.Resolution = restart + "\nVerificar os logs do agent:\n  kubectl logs -n spire-system daemonset/spire-agent --tail=100 | grep -i -e auth -e attestation"
		return f, true
	}
	return doctor.Finding{}, false
}

// checkAuthorities flags a missing or expiring X.509 CA or JWT key, and an
// X.509 CA past the point where rotation should have replaced it.
func (d *serverDoctor) checkAuthorities(ctx context.Context, c *client) []doctor.Finding {
	now := d.e.clock()
	threshold := time.Duration(d.threshold)
	var out []doctor.Finding

	cctx, cancel := d.call(ctx)
	x, err := c.localAuthority().GetX509AuthorityState(cctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	cancel()
	if err != nil {
		out = append(out, doctor.Finding{Check: "server.ca.x509", Status: doctor.Crit, Detail: fmt.Sprintf("could not get X.509 authorities: %v", err)})
	} else {
		out = append(out, d.judgeAuthority("server.ca.x509", "x509", x.Active, x.Prepared, d.x509Lifetimes(ctx, c), threshold, now))
	}

	cctx, cancel = d.call(ctx)
	j, err := c.localAuthority().GetJWTAuthorityState(cctx, &localauthorityv1.GetJWTAuthorityStateRequest{})
	cancel()
	if err != nil {
		out = append(out, doctor.Finding{Check: "server.ca.jwt", Status: doctor.Crit, Detail: fmt.Sprintf("could not get JWT authorities: %v", err)})
	} else {
		out = append(out, d.judgeAuthority("server.ca.jwt", "jwt", j.Active, j.Prepared, nil, threshold, now))
	}
	return out
}

// x509Lifetimes maps authority IDs (hex Subject Key IDs) of the bundle's
// X.509 authorities to their lifetimes; nil when the bundle is unavailable.
func (d *serverDoctor) x509Lifetimes(ctx context.Context, c *client) map[string]time.Duration {
	cctx, cancel := d.call(ctx)
	defer cancel()
	b, err := c.bundle().GetBundle(cctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return nil
	}
	out := map[string]time.Duration{}
	for _, a := range b.X509Authorities {
		cert, err := x509.ParseCertificate(a.Asn1)
		if err != nil || len(cert.SubjectKeyId) == 0 {
			continue
		}
		out[hex.EncodeToString(cert.SubjectKeyId)] = cert.NotAfter.Sub(cert.NotBefore)
	}
	return out
}

// judgeAuthority: CRIT without an active authority, once it expired or with
// less than threshold left (SVIDs are cut short at the CA's expiry); WARN
// when, with its lifetime known, it is past the point where the prepared
// successor should have been activated (a sixth of its life, at most 7 days,
// as the rotation does).
func (d *serverDoctor) judgeAuthority(check, kind string, active, prepared *localauthorityv1.AuthorityState, lifetimes map[string]time.Duration, threshold time.Duration, now time.Time) doctor.Finding {
	f := doctor.Finding{Check: check}
	label := map[string]string{"x509": "X.509", "jwt": "JWT"}[kind]
	activate := d.cmd("localauthority", kind, "activate", "-authorityID", "<ID preparado>")
	if prepared != nil {
		activate = d.cmd("localauthority", kind, "activate", "-authorityID", prepared.AuthorityId)
	}
	rotate := "Rotacionar SPIRE Server Root CA:\n" +
		"  " + d.cmd("bundle", "show") + " > spire-bundle-backup.pem\n"
	if prepared == nil {
		rotate += "  " + d.cmd("localauthority", kind, "prepare") + "\n"
	}
	rotate += "  (aguardar que o bundle com a nova autoridade chegue aos agents e workloads: no minimo o TTL dos SVIDs)\n" +
		"  " + activate + "\n" +
		"Validar apos rotacao:\n" +
		"  " + d.cmd("localauthority", kind, "show")
	if active == nil {
		f.Status, f.Detail, f.Resolution = doctor.Crit, "no active "+label+" authority: the server cannot sign", rotate
		return f
	}
	expires := time.Unix(active.ExpiresAt, 0)
	left := expires.Sub(now)
	at := expires.UTC().Format(time.RFC3339)
	switch {
	case left <= 0:
		f.Status, f.Detail = doctor.Crit, fmt.Sprintf("active %s authority %s expired at %s", label, active.AuthorityId, at)
	case left < threshold:
		f.Status, f.Detail = doctor.Crit, fmt.Sprintf("active %s authority %s expires at %s (in %s): SVIDs are cut short at its expiry", label, active.AuthorityId, at, left.Round(time.Second))
	default:
		life, known := lifetimes[active.AuthorityId]
		if known && left < min(life/6, 7*24*time.Hour) {
			f.Status, f.Detail = doctor.Warn, fmt.Sprintf("active %s authority %s expires at %s (in %s), past the point where rotation activates its successor", label, active.AuthorityId, at, left.Round(time.Second))
			break
		}
		f.Status, f.Detail = doctor.OK, fmt.Sprintf("active %s authority %s expires at %s (in %s)", label, active.AuthorityId, at, left.Round(time.Second))
		if prepared != nil {
			f.Detail += "; prepared: " + prepared.AuthorityId
		}
		return f
	}
	f.Resolution = rotate
	return f
}
