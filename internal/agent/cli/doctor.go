package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/neural-hive/hive-identity/internal/doctor"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Extension: `spire-agent doctor` runs the diagnosis of the operations
// runbook on the agent's Workload API socket and prints each finding with
// the runbook's resolution (in the runbook's language, Portuguese).

// runbookTTL is the SVID TTL of the runbook's `entry create -ttl 3600`, its
// X.509-SVID expiry alert threshold and its minimum JWT-SVID TTL.
const runbookTTL = 3600 * time.Second

// runbookAgentAlias is the parent ID of the runbook's entries.
const runbookAgentAlias = "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent"

// secondsFlag is a duration given in seconds ("3600") or as a Go duration ("1h").
type secondsFlag time.Duration

func (d *secondsFlag) String() string { return time.Duration(*d).String() }

func (d *secondsFlag) Set(v string) error {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		*d = secondsFlag(time.Duration(n) * time.Second)
		return nil
	}
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want seconds or a duration such as 1h: %w", err)
	}
	*d = secondsFlag(x)
	return nil
}

// idListFlag collects repeated numeric IDs.
type idListFlag []uint32

func (l *idListFlag) String() string { return fmt.Sprint(*l) }

func (l *idListFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return err
	}
	*l = append(*l, uint32(n))
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

// shellLine joins words into one shell command line; words holding a
// "<placeholder>" stay unquoted so the operator sees what to fill in.
func shellLine(words ...string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if strings.Contains(w, "<") && strings.Contains(w, ">") {
			out[i] = w
			continue
		}
		out[i] = shellQuote(w)
	}
	return strings.Join(out, " ")
}

// principal is who a permission check is for: a uid and its groups.
type principal struct {
	uid  uint32
	gids []uint32
}

// permission bits, as in the "other" triplet of a mode.
const (
	permWrite  = 0o2
	permSearch = 0o1
)

// denial is the first path element that keeps a principal from the socket.
type denial struct {
	path  string
	mode  fs.FileMode
	uid   uint32
	gid   uint32
	class string // the mode triplet that applies: "u", "g" or "o"
	bit   uint32 // permSearch on a directory, permWrite on the socket
}

func (d *denial) need() string {
	if d.bit == permWrite {
		return "write (w) permission on the socket"
	}
	return "search (x) permission on the directory"
}

// errSocketMissing and errNotSocket are what socketAccess reports about the
// socket itself, beside permission denials.
var (
	errSocketMissing = errors.New("socket does not exist")
	errNotSocket     = errors.New("not a unix socket")
)

// allowed applies the kernel's discretionary check to one file: root passes,
// then exactly one triplet applies: owner, else group (primary or
// supplementary), else other. ACLs and capabilities other than root's are
// not considered.
func allowed(st *syscall.Stat_t, who principal, bit uint32) (bool, string) {
	if who.uid == 0 {
		return true, "root"
	}
	switch {
	case st.Uid == who.uid:
		return st.Mode&(bit<<6) != 0, "u"
	case slices.Contains(who.gids, st.Gid):
		return st.Mode&(bit<<3) != 0, "g"
	default:
		return st.Mode&bit != 0, "o"
	}
}

// socketAccess walks every directory from / to the socket at path and the
// socket: who needs search permission on each directory and write
// permission on the socket to connect. A path through symlinks is walked as
// written (the directories holding the links) and as resolved (where the
// links point); links themselves need no permission. It returns the first
// denial, or an error when the socket is missing, is not a socket, or a path
// element cannot be inspected.
func socketAccess(path string, who principal) (*denial, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	target := abs
	paths := []string{abs}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil && resolved != abs {
		target = resolved
		paths = append(paths, resolved)
	}
	var dirs []string
	for _, p := range paths {
		var chain []string
		for d := filepath.Dir(p); ; d = filepath.Dir(d) {
			chain = append(chain, d)
			if d == "/" {
				break
			}
		}
		slices.Reverse(chain)
		for _, d := range chain {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	check := func(p string, bit uint32) (*denial, error) {
		info, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		if info.Mode().Type() == fs.ModeSymlink {
			return nil, nil // walked where it points
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil, fmt.Errorf("no owner information for %s", p)
		}
		if bit == permWrite && info.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s: %w", p, errNotSocket)
		}
		if ok, class := allowed(st, who, bit); !ok {
			return &denial{path: p, mode: info.Mode(), uid: st.Uid, gid: st.Gid, class: class, bit: bit}, nil
		}
		return nil, nil
	}
	for _, d := range dirs {
		den, err := check(d, permSearch)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", abs, errSocketMissing)
		}
		if err != nil || den != nil {
			return den, err
		}
	}
	den, err := check(target, permWrite)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", abs, errSocketMissing)
	}
	return den, err
}

// doctorCommand is `spire-agent doctor`.
type doctorCommand struct {
	e          *env
	fs         *flag.FlagSet
	socketPath string
	uid        int
	gids       idListFlag
	threshold  secondsFlag
	audience   commaListFlag
	parentID   string
	timeout    durationFlag
	output     outputFlag
}

func newDoctorCommand(e *env) command {
	c := &doctorCommand{e: e, fs: newFlagSet("doctor", e.stderr), threshold: secondsFlag(runbookTTL), timeout: durationFlag(defaultTimeout)}
	c.fs.StringVar(&c.socketPath, "socketPath", defaultSocketPath, "Unix socket of the agent's Workload API")
	c.fs.IntVar(&c.uid, "uid", -1, "Check that this uid can reach the socket; -1 means the caller's uid")
	c.fs.Var(&c.gids, "gid", "Group of -uid beside those of the user database (a pod's runAsGroup or fsGroup); repeat for more")
	c.fs.Var(&c.threshold, "threshold", "Flag SVIDs with less than this left (seconds or a duration) once past their renewal point")
	c.fs.Var(&c.audience, "audience", "Also fetch a JWT-SVID for these audiences (comma separated)")
	c.fs.StringVar(&c.parentID, "parentID", runbookAgentAlias, "Parent ID used in the suggested entry create command")
	c.fs.Var(&c.timeout, "timeout", "How long to wait for each answer of the Workload API")
	c.fs.Var(&c.output, "output", "Output format, pretty or json; pretty when unset.")
	return c
}

func (c *doctorCommand) synopsis() string {
	return "Extension: diagnoses the agent and this workload's identity as the runbook does, with resolutions"
}

func (c *doctorCommand) help() string {
	printUsage(c.fs)
	return ""
}

func (c *doctorCommand) run(ctx context.Context, args []string) int {
	if err := c.fs.Parse(args); err != nil {
		return exitFailure
	}
	report := doctor.NewReport(c.checks(ctx))
	var err error
	if c.output.json {
		err = report.WriteJSON(c.e.stdout)
	} else {
		err = report.WritePretty(c.e.stdout)
	}
	if err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	return report.ExitCode()
}

// checks runs the checks in the runbook's order: socket reachable, agent
// healthy, identity issued, SVIDs renewed, JWT-SVID issued. A missing
// socket or an agent that does not answer ends the list.
func (c *doctorCommand) checks(ctx context.Context) []doctor.Finding {
	sock, missing := c.checkSocket()
	findings := []doctor.Finding{sock}
	if missing {
		return findings
	}
	health, up := c.checkHealth(ctx)
	findings = append(findings, health)
	if !up {
		return findings
	}
	findings = append(findings, c.checkIdentity(ctx)...)
	if len(c.audience) > 0 {
		findings = append(findings, c.checkJWT(ctx))
	}
	return findings
}

// who is the principal of -uid: the caller's credentials for the caller,
// else the user database's groups, plus -gid.
func (c *doctorCommand) who() (principal, string) {
	caller := c.uid < 0 || c.uid == os.Getuid()
	p := principal{uid: uint32(os.Getuid())}
	var note string
	if caller {
		p.gids = append(p.gids, uint32(os.Getgid()))
		if groups, err := os.Getgroups(); err == nil {
			for _, g := range groups {
				p.gids = append(p.gids, uint32(g))
			}
		}
	} else {
		p.uid = uint32(c.uid)
		if u, err := user.LookupId(strconv.Itoa(c.uid)); err == nil {
			note = " (" + u.Username + ")"
			groups, _ := u.GroupIds()
			for _, g := range groups {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil {
					p.gids = append(p.gids, uint32(n))
				}
			}
		} else {
			note = " (not in the user database: only -gid groups are considered)"
		}
	}
	p.gids = append(p.gids, c.gids...)
	slices.Sort(p.gids)
	p.gids = slices.Compact(p.gids)
	return p, note
}

func (c *doctorCommand) agentDown() string {
	return "Se SPIRE Agent down:\n" +
		"  kubectl rollout restart daemonset/spire-agent -n spire-system\n" +
		"Verificar se SPIRE Agent esta rodando:\n" +
		"  kubectl get pods -n spire-system -l app=spire-agent\n" +
		"Fora do Kubernetes: iniciar o agent e verificar sua saude:\n" +
		"  spire-agent run -config <agent.conf>\n" +
		"  " + shellLine("spire-agent", "healthcheck", "-socketPath", c.socketPath)
}

// checkSocket reports whether -uid can connect to the socket; missing is
// true when there is no socket (the agent is down).
func (c *doctorCommand) checkSocket() (f doctor.Finding, missing bool) {
	f = doctor.Finding{Check: "agent.socket"}
	who, note := c.who()
	subject := fmt.Sprintf("uid %d%s", who.uid, note)
	den, err := socketAccess(c.socketPath, who)
	switch {
	case errors.Is(err, errSocketMissing):
		f.Status, f.Detail, f.Resolution = doctor.Crit, fmt.Sprintf("%v: the agent is not running or serves another path", err), c.agentDown()
		return f, true
	case err != nil:
		f.Status, f.Detail = doctor.Crit, fmt.Sprintf("cannot inspect the socket path for %s: %v", subject, err)
		f.Resolution = c.permissionSteps(filepath.Dir(c.socketPath))
		return f, false
	case den != nil:
		f.Status = doctor.Crit
		f.Detail = fmt.Sprintf("%s cannot reach %s: %s needs %s (mode %s, owner %d:%d, the %q bits apply)",
			subject, c.socketPath, den.path, den.need(), den.mode.Perm(), den.uid, den.gid, den.class)
		perm := "x"
		if den.bit == permWrite {
			perm = "w"
		}
		f.Resolution = fmt.Sprintf("Socket Permission Denied: o uid %d precisa de permissao %s em %s.\n", who.uid, perm, den.path) +
			c.permissionSteps(filepath.Dir(c.socketPath)) + "\n" +
			"Corrigir a permissao (ou rodar o workload com um uid/grupo que a tenha, no securityContext):\n" +
			"  " + shellLine("chmod", den.class+"+"+perm, den.path)
		return f, false
	}
	f.Status, f.Detail = doctor.OK, fmt.Sprintf("%s can reach %s", subject, c.socketPath)
	return f, false
}

// permissionSteps are the runbook's steps for "Socket Permission Denied".
func (c *doctorCommand) permissionSteps(dir string) string {
	return "1. Verificar permissoes do socket:\n" +
		"  " + shellLine("ls", "-la", dir+"/") + "\n" +
		"2. Verificar se volume esta montado:\n" +
		"  kubectl exec -n <namespace> <pod-name> -- " + shellLine("ls", "-la", dir+"/") + "\n" +
		"3. Verificar securityContext do pod:\n" +
		"  kubectl get pod -n <namespace> <pod-name> -o yaml | grep -A10 securityContext"
}

// checkHealth asks the agent's gRPC health service, as healthcheck does.
func (c *doctorCommand) checkHealth(ctx context.Context) (doctor.Finding, bool) {
	f := doctor.Finding{Check: "agent.health"}
	target, err := socketTarget(c.socketPath)
	if err == nil {
		var conn *grpc.ClientConn
		conn, err = grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			defer conn.Close()
			cctx, cancel := context.WithTimeout(ctx, time.Duration(c.timeout))
			defer cancel()
			var resp *healthpb.HealthCheckResponse
			resp, err = healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
			if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				f.Status, f.Detail, f.Resolution = doctor.Crit, fmt.Sprintf("agent reports %s", resp.GetStatus()), c.agentDown()
				return f, true
			}
		}
	}
	if err != nil {
		f.Status, f.Detail, f.Resolution = doctor.Crit, fmt.Sprintf("agent does not answer on %s: %v", c.socketPath, err), c.agentDown()
		if strings.Contains(err.Error(), "permission denied") {
			f.Resolution = "Socket Permission Denied:\n" + c.permissionSteps(filepath.Dir(c.socketPath))
		}
		return f, false
	}
	f.Status, f.Detail = doctor.OK, "Agent is healthy."
	return f, true
}

// entryCommands is the runbook's "Recriar entry" for the caller's uid, and
// its Kubernetes form.
func (c *doctorCommand) entryCommands() string {
	td := "<trust-domain>"
	if id, err := spiffeid.FromString(c.parentID); err == nil {
		td = id.TrustDomain().Name()
	}
	uidSel := "unix:uid:" + strconv.Itoa(os.Getuid())
	spiffeID := "spiffe://" + td + "/ns/<namespace>/sa/<service-account>"
	return "Se entry SPIFFE ausente: Recriar entry\n" +
		"  " + shellLine("spire-server", "entry", "create", "-spiffeID", spiffeID, "-parentID", c.parentID, "-selector", uidSel, "-ttl", "3600") + "\n" +
		"Em Kubernetes, com os seletores do pod:\n" +
		"  kubectl exec -n spire-system deployment/spire-server -- " +
		shellLine("/opt/spire/bin/spire-server", "entry", "create", "-spiffeID", spiffeID, "-parentID", c.parentID,
			"-selector", "k8s:ns:<namespace>", "-selector", "k8s:sa:<service-account>", "-ttl", "3600") + "\n" +
		"Verificar entries SPIFFE:\n" +
		"  " + shellLine("spire-server", "entry", "show", "-selector", uidSel)
}

// checkIdentity fetches the caller's X.509 context with go-spiffe's
// Workload API client and judges the expiry of each SVID.
func (c *doctorCommand) checkIdentity(ctx context.Context) []doctor.Finding {
	f := doctor.Finding{Check: "agent.identity"}
	target, err := socketTarget(c.socketPath)
	if err != nil {
		return []doctor.Finding{{Check: f.Check, Status: doctor.Crit, Detail: err.Error()}}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Duration(c.timeout))
	defer cancel()
	x, err := workloadapi.FetchX509Context(cctx, workloadapi.WithAddr(target))
	caller := fmt.Sprintf("the caller (uid %d)", os.Getuid())
	switch {
	case status.Code(err) == codes.PermissionDenied:
		f.Status = doctor.Crit
		f.Detail = fmt.Sprintf("%s gets no identity: no entry matches this workload's selectors (%v)", caller, err)
		f.Resolution = c.entryCommands()
		return []doctor.Finding{f}
	case err != nil:
		f.Status, f.Detail = doctor.Crit, fmt.Sprintf("%s could not fetch an X509-SVID: %v", caller, err)
		f.Resolution = c.agentDown()
		return []doctor.Finding{f}
	}
	ids := make([]string, len(x.SVIDs))
	for i, s := range x.SVIDs {
		ids[i] = s.ID.String()
	}
	noun := "X509-SVIDs"
	if len(ids) == 1 {
		noun = "X509-SVID"
	}
	f.Status, f.Detail = doctor.OK, fmt.Sprintf("%s gets %d %s: %s", caller, len(ids), noun, strings.Join(ids, ", "))
	out := []doctor.Finding{f}
	now := c.e.now()
	for _, s := range x.SVIDs {
		out = append(out, c.judgeSVID(s.ID.String(), s.Certificates[0].NotBefore, s.Certificates[0].NotAfter, now))
	}
	return out
}

func (c *doctorCommand) judgeSVID(id string, notBefore, notAfter, now time.Time) doctor.Finding {
	f := doctor.Finding{Check: "agent.svid"}
	life := notAfter.Sub(notBefore)
	left := notAfter.Sub(now).Round(time.Second)
	at := notAfter.UTC().Format(time.RFC3339)
	f.Status = doctor.ExpiryStatus(notAfter, life, time.Duration(c.threshold), now)
	switch f.Status {
	case doctor.OK:
		f.Detail = fmt.Sprintf("%s expires at %s (in %s of a %s lifetime)", id, at, left, life)
		return f
	case doctor.Crit:
		f.Detail = fmt.Sprintf("%s expired at %s and is still served", id, at)
	default:
		f.Detail = fmt.Sprintf("%s expires at %s (in %s, under %s) and was not renewed at half of its %s lifetime", id, at, left, time.Duration(c.threshold), life)
	}
	f.Resolution = "Incident: X.509-SVID Expiration\n" +
		"1. Verificar expiracao:\n" +
		"  " + shellLine("curl", "-s", "--unix-socket", c.socketPath, "http://localhost/v1/spiffe/workload/x509svid") + " | jq '.svids[0].expires_at'\n" +
		"2. O agent nao renovou o SVID: verificar se o servidor responde e se o agent sincroniza:\n" +
		"  spire-server healthcheck\n" +
		"  spire-server agent list\n" +
		"  kubectl logs -n spire-system daemonset/spire-agent --tail=100 | grep -i -e auth -e attestation\n" +
		"3. Forcar renovacao (restart pod):\n" +
		"  kubectl rollout restart deployment/<deployment> -n <namespace>"
	return f
}

// checkJWT fetches a JWT-SVID for -audience and checks it against the
// runbook's minimum TTL of 3600 s.
func (c *doctorCommand) checkJWT(ctx context.Context) doctor.Finding {
	f := doctor.Finding{Check: "agent.jwt"}
	expired := "Se JWT expirado:\n" +
		"- Verificar TTL configurado (deve ser >= 3600s):\n" +
		"  spire-server entry show -selector " + shellQuote("unix:uid:"+strconv.Itoa(os.Getuid())) + "\n" +
		"  spire-server entry update -entryID <entry-id> ... -jwtSVIDTTL 3600\n" +
		"- Reiniciar pods para obter novos JWTs:\n" +
		"  kubectl rollout restart deployment/<deployment> -n <namespace>"
	target, err := socketTarget(c.socketPath)
	if err != nil {
		return doctor.Finding{Check: f.Check, Status: doctor.Crit, Detail: err.Error()}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Duration(c.timeout))
	defer cancel()
	client, err := workloadapi.New(cctx, workloadapi.WithAddr(target))
	if err != nil {
		return doctor.Finding{Check: f.Check, Status: doctor.Crit, Detail: err.Error(), Resolution: c.agentDown()}
	}
	defer client.Close()
	aud := strings.Join(c.audience, ",")
	svid, err := client.FetchJWTSVID(cctx, jwtsvid.Params{Audience: c.audience[0], ExtraAudiences: c.audience[1:]})
	switch {
	case status.Code(err) == codes.PermissionDenied:
		f.Status, f.Detail, f.Resolution = doctor.Crit, fmt.Sprintf("no JWT-SVID for audience %s: no entry matches this workload's selectors (%v)", aud, err), c.entryCommands()
		return f
	case err != nil:
		f.Status, f.Detail, f.Resolution = doctor.Crit, fmt.Sprintf("could not fetch a JWT-SVID for audience %s: %v", aud, err), expired
		return f
	}
	now := c.e.now()
	var ttl time.Duration
	if iat, ok := svid.Claims["iat"].(float64); ok {
		ttl = svid.Expiry.Sub(time.Unix(int64(iat), 0))
	}
	at := svid.Expiry.UTC().Format(time.RFC3339)
	switch {
	case !svid.Expiry.After(now):
		f.Status, f.Detail = doctor.Crit, fmt.Sprintf("JWT-SVID for %s (audience %s) expired at %s", svid.ID, aud, at)
	case ttl > 0 && ttl < runbookTTL:
		f.Status, f.Detail = doctor.Warn, fmt.Sprintf("JWT-SVID for %s (audience %s) has a TTL of %s, under the runbook's 3600s; expires at %s", svid.ID, aud, ttl, at)
	default:
		f.Status, f.Detail = doctor.OK, fmt.Sprintf("JWT-SVID for %s (audience %s) expires at %s (TTL %s)", svid.ID, aud, at, ttl)
		return f
	}
	f.Resolution = expired
	return f
}
