package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const agentAlias = "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent"

var uidSelector = "unix:uid:" + strconv.Itoa(os.Getuid())

// plane starts a server and one agent whose join token makes it a member of
// the runbook's node alias, as `token generate -spiffeID` does in SPIRE.
func plane(t *testing.T) (*server, *agentProc) {
	t.Helper()
	s := newServer(t, serverOptions{})
	a := newAgent(t, s, s.token(agentAlias))
	return s, a
}

func wlClient(t *testing.T, a *agentProc) *workloadapi.Client {
	t.Helper()
	c, err := workloadapi.New(context.Background(), workloadapi.WithAddr("unix://"+a.socket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitSVIDs watches the agent's X.509 stream until pred holds for the latest
// update (bounded), and returns that update's SPIFFE IDs.
func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgent_WorkloadGetsSVIDAndStreamFollowsEntries(t *testing.T) {
	s, a := plane(t)
	c := wlClient(t, a)

	// No entry for our uid yet: PermissionDenied, no identity (WA-07).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := c.FetchX509SVID(ctx)
	cancel()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("fetch with no matching entry: %v", err)
	}

	// A watcher open before the entry exists receives it when it is created.
	updates := make(chan []string, 16)
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	go func() {
		_ = c.WatchX509Context(wctx, watcher{updates})
	}()

	id := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"
	entryID := s.createEntry("-spiffeID", id, "-parentID", agentAlias, "-selector", uidSelector, "-ttl", "3600")
	waitUpdate(t, updates, func(ids []string) bool { return len(ids) == 1 && ids[0] == id })

	// A second identity for the same workload arrives on the same stream.
	id2 := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/second"
	entry2 := s.createEntry("-spiffeID", id2, "-parentID", agentAlias, "-selector", uidSelector)
	waitUpdate(t, updates, func(ids []string) bool { return len(ids) == 2 })

	// Deleting an entry removes its SVID from the stream.
	if _, errOut, code := s.cli("entry", "delete", "-entryID", entry2); code != 0 {
		t.Fatal(errOut)
	}
	waitUpdate(t, updates, func(ids []string) bool { return len(ids) == 1 && ids[0] == id })

	// The SVID is a valid X509-SVID for the entry, chained to `bundle show`.
	svid, err := c.FetchX509SVID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != id {
		t.Fatalf("SVID ID %s", svid.ID)
	}
	if ttl := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); ttl < time.Hour || ttl > time.Hour+time.Minute {
		t.Fatalf("SVID lifetime %s, want the entry's 3600s", ttl)
	}
	bundles, err := c.FetchX509Bundles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundles); err != nil {
		t.Fatalf("SVID does not verify against the bundle: %v", err)
	}

	// Deleting the last entry: PermissionDenied again.
	if _, errOut, code := s.cli("entry", "delete", "-entryID", entryID); code != 0 {
		t.Fatal(errOut)
	}
	waitFor(t, "PermissionDenied after the last entry is deleted", 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.FetchX509SVID(ctx)
		return status.Code(err) == codes.PermissionDenied
	})
}

type watcher struct{ c chan []string }

func (w watcher) OnX509ContextUpdate(x *workloadapi.X509Context) {
	var ids []string
	for _, s := range x.SVIDs {
		ids = append(ids, s.ID.String())
	}
	w.c <- ids
}

func (w watcher) OnX509ContextWatchError(error) {}

func waitUpdate(t *testing.T, c chan []string, ok func([]string) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ids := <-c:
			if ok(ids) {
				return
			}
		case <-deadline:
			t.Fatal("no matching X.509 update within 10s")
		}
	}
}

// TestAgent_TwoWorkloadsMTLS: two go-spiffe workloads talk mTLS and authorize
// each other by SPIFFE ID.
func TestAgent_TwoWorkloadsMTLS(t *testing.T) {
	s, a := plane(t)
	serverID := spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/service-registry")
	clientID := spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents")
	s.createEntry("-spiffeID", serverID.String(), "-parentID", agentAlias, "-selector", uidSelector)
	s.createEntry("-spiffeID", clientID.String(), "-parentID", agentAlias, "-selector", uidSelector)

	source := func(id spiffeid.ID) *workloadapi.X509Source {
		src, err := workloadapi.NewX509Source(context.Background(),
			workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)),
			workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
				for _, s := range svids {
					if s.ID == id {
						return s
					}
				}
				return svids[0]
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src
	}
	waitFor(t, "both SVIDs", 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ctxs, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+a.socket))
		return err == nil && len(ctxs.SVIDs) == 2
	})
	srvSrc, cliSrc := source(serverID), source(clientID)

	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(srvSrc, srvSrc, tlsconfig.AuthorizeID(clientID)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()

	conn, err := tls.Dial("tcp", l.Addr().String(), tlsconfig.MTLSClientConfig(cliSrc, cliSrc, tlsconfig.AuthorizeID(serverID)))
	if err != nil {
		t.Fatalf("mTLS handshake: %v", err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	conn.Close()

	// The client refuses a server with another ID.
	other := spiffeid.RequireFromString("spiffe://neural-hive.local/ns/x/sa/not-the-registry")
	if c, err := tls.Dial("tcp", l.Addr().String(), tlsconfig.MTLSClientConfig(cliSrc, cliSrc, tlsconfig.AuthorizeID(other))); err == nil {
		c.Close()
		t.Fatal("client accepted a server with an unexpected SPIFFE ID")
	}
}

// TestAgent_RunbookCommands: the runbook's agent healthcheck and curl | jq
// lines, verbatim apart from the socket path.
func TestAgent_RunbookCommands(t *testing.T) {
	s, a := plane(t)
	s.createEntry("-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/orchestrator-dynamic",
		"-parentID", agentAlias, "-selector", uidSelector, "-ttl", "3600")

	out, errOut, code := run("", filepath.Join(binDir, "spire-agent"), "healthcheck", "-socketPath", a.socket)
	if code != 0 || out != "Agent is healthy.\n" {
		t.Fatalf("healthcheck: %d %q %q", code, out, errOut)
	}

	for _, tool := range []string{"curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run the runbook line verbatim: %v", tool, err)
		}
	}
	line := "curl -s --unix-socket " + a.socket + " http://localhost/v1/spiffe/workload/x509svid | jq '.svids[0].expires_at'"
	var got string
	waitFor(t, "the runbook curl line to print an expiry", 10*time.Second, func() bool {
		b, err := exec.Command("bash", "-c", line).Output()
		got = strings.TrimSpace(string(b))
		return err == nil && got != "null" && got != ""
	})
	exp, err := strconv.ParseInt(got, 10, 64)
	if err != nil {
		t.Fatalf("expires_at %q is not a number: %v", got, err)
	}
	if left := time.Until(time.Unix(exp, 0)); left < 55*time.Minute || left > 61*time.Minute {
		t.Fatalf("expires_at %d is %s away, want about one hour", exp, left)
	}

	// The JSON never carries a private key.
	body, err := exec.Command("curl", "-s", "--unix-socket", a.socket, "http://localhost/v1/spiffe/workload/x509svid").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), "PRIVATE KEY") || strings.Contains(string(body), "x509_svid_key") {
		t.Fatalf("private key material in the HTTP answer: %s", body)
	}
	var doc struct {
		SVIDs []struct {
			SPIFFEID string `json:"spiffe_id"`
			X509SVID string `json:"x509_svid"`
		} `json:"svids"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || len(doc.SVIDs) != 1 || !strings.Contains(doc.SVIDs[0].X509SVID, "BEGIN CERTIFICATE") {
		t.Fatalf("answer %s: %v", body, err)
	}
}

// TestAgent_Refusals: header, unmatched uid, reused token, evicted agent, and
// an agent never receiving another agent's entries.
func TestAgent_Refusals(t *testing.T) {
	s := newServer(t, serverOptions{})
	tokA := s.token("")
	a := newAgent(t, s, tokA)
	b := newAgent(t, s, s.token(""))
	agentA := "spiffe://neural-hive.local/spire/agent/join_token/" + tokA

	// An entry parented to agent A only.
	s.createEntry("-spiffeID", "spiffe://neural-hive.local/only/a", "-parentID", agentA, "-selector", uidSelector)
	ca := wlClient(t, a)
	waitFor(t, "agent A to serve its entry", 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		svid, err := ca.FetchX509SVID(ctx)
		return err == nil && svid.ID.String() == "spiffe://neural-hive.local/only/a"
	})

	t.Run("fail/T2 agent B never receives agent A's entry", func(t *testing.T) {
		cb := wlClient(t, b)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := cb.FetchX509SVID(ctx); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("agent B: %v", err)
		}
	})

	t.Run("fail/WE-03 request without the security header", func(t *testing.T) {
		conn, err := grpc.NewClient("unix://"+a.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(context.Background(), &workload.X509SVIDRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "security header missing from request") {
			t.Fatalf("got %v", err)
		}
		ctx := metadata.AppendToOutgoingContext(context.Background(), "workload.spiffe.io", "true")
		stream, err = workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			t.Fatalf("with the header: %v", err)
		}
	})

	t.Run("fail/uid that matches no entry gets PermissionDenied", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Fatal("this test runs the CLI as another uid and needs root (CI runs as root)")
		}
		for _, d := range []string{a.dir, binDir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(filepath.Join(binDir, "spire-agent"), "api", "fetch", "x509", "-socketPath", a.socket)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "PermissionDenied") {
			t.Fatalf("fetch as uid 65534: %v %s", err, out)
		}
	})

	t.Run("fail/T4 reused join token", func(t *testing.T) {
		again := prepareAgent(t, s)
		again.startNoWait(tokA)
		if !again.waitExit(20 * time.Second) {
			t.Fatalf("agent with a used token kept running:\n%s", again.logs.String())
		}
		if !strings.Contains(again.logs.String(), "join token does not exist or has already been used") {
			t.Fatalf("logs lack the refusal:\n%s", again.logs.String())
		}
	})

	t.Run("fail/T3 evicted agent is refused", func(t *testing.T) {
		if out, errOut, code := s.cli("agent", "evict", "-spiffeID", agentA); code != 0 {
			t.Fatalf("evict: %s %s", out, errOut)
		}
		if !a.waitExit(20 * time.Second) {
			t.Fatalf("evicted agent kept running:\n%s", a.logs.String())
		}
		// Restarted with whatever it kept, it is refused again and exits.
		a.startNoWait("")
		if !a.waitExit(20 * time.Second) {
			t.Fatalf("evicted agent came back:\n%s", a.logs.String())
		}
	})
}

// TestAgent_RestartAndServerOutage: an agent restarts without a new join
// token; with the server down longer than a sync interval workloads keep
// their SVIDs; with the server back, changes flow again.
func TestAgent_RestartAndServerOutage(t *testing.T) {
	s, a := plane(t)
	id := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"
	s.createEntry("-spiffeID", id, "-parentID", agentAlias, "-selector", uidSelector)
	c := wlClient(t, a)
	fetchID := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		svid, err := c.FetchX509SVID(ctx)
		if err != nil {
			return err.Error()
		}
		return svid.ID.String()
	}
	waitFor(t, "the SVID", 10*time.Second, func() bool { return fetchID() == id })

	a.stop()
	a.start("") // no join token: the stored agent SVID is used
	waitFor(t, "the SVID after an agent restart", 10*time.Second, func() bool { return fetchID() == id })

	s.stop()
	time.Sleep(6 * time.Second) // longer than the 5 s sync interval of SPIRE agents
	if got := fetchID(); got != id {
		t.Fatalf("with the server down the workload lost its SVID: %s", got)
	}
	if out, _, code := a.cli("healthcheck"); code != 0 || out != "Agent is healthy.\n" {
		t.Fatalf("agent unhealthy while the server is down: %q", out)
	}

	s.start()
	id2 := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/after-outage"
	s.createEntry("-spiffeID", id2, "-parentID", agentAlias, "-selector", uidSelector)
	waitFor(t, "a change after the server came back", 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		x, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+a.socket))
		return err == nil && len(x.SVIDs) == 2
	})
}

// TestAgent_ShortTTLRotatesWithoutGap: an entry with a 20 s X.509 TTL is
// rotated at half-life; the workload always holds a valid SVID.
func TestAgent_ShortTTLRotatesWithoutGap(t *testing.T) {
	s, a := plane(t)
	id := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/short"
	s.createEntry("-spiffeID", id, "-parentID", agentAlias, "-selector", uidSelector, "-x509SVIDTTL", "20")
	c := wlClient(t, a)
	serials := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(serials) < 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		svid, err := c.FetchX509SVID(ctx)
		cancel()
		if err == nil {
			leaf := svid.Certificates[0]
			if now := time.Now(); now.After(leaf.NotAfter) {
				t.Fatalf("served an expired SVID (not after %s, now %s)", leaf.NotAfter, now)
			}
			serials[leaf.SerialNumber.String()] = true
		} else if len(serials) > 0 {
			t.Fatalf("gap in service during rotation: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Fatalf("saw %d distinct SVIDs in 30s with a 20s TTL, want rotation at half-life", len(serials))
	}
}
