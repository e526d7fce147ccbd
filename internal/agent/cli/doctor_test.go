package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/doctor"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// listenSocket creates a unix socket at path with mode, closed at the end of the test.
func listenSocket(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestSocketAccessWalk builds real directories and sockets with chmod and
// checks the walk's verdict for principals that own them, share their
// group, or neither.
func TestSocketAccessWalk(t *testing.T) {
	me, myGroup := uint32(os.Getuid()), uint32(os.Getgid())
	stranger := principal{uid: me + 4242}
	member := principal{uid: me + 4242, gids: []uint32{myGroup}}
	owner := principal{uid: me}
	if me == 0 {
		owner = principal{uid: 0}
	}
	for _, tt := range []struct {
		name    string
		dirMode os.FileMode // of <tmp>/sock
		sock    os.FileMode
		who     principal
		at      string // "" allowed; "dir" or "sock": denied there
		class   string
	}{
		{name: "ok/world-usable socket", dirMode: 0o755, sock: 0o777, who: stranger},
		{name: "ok/owner", dirMode: 0o700, sock: 0o700, who: owner},
		{name: "ok/group member", dirMode: 0o710, sock: 0o720, who: member},
		{name: "ok/root passes everything", dirMode: 0o000, sock: 0o000, who: principal{uid: 0}},
		{name: "fail/other without search on the directory", dirMode: 0o700, sock: 0o777, who: stranger, at: "dir", class: "o"},
		{name: "fail/group bits apply to members even when other allows", dirMode: 0o701, sock: 0o777, who: member, at: "dir", class: "g"},
		{name: "fail/socket not writable", dirMode: 0o755, sock: 0o755, who: stranger, at: "sock", class: "o"},
		{name: "fail/socket not writable by group", dirMode: 0o755, sock: 0o757, who: member, at: "sock", class: "g"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := tempDir(t)
			chmod(t, base, 0o755)
			dir := filepath.Join(base, "sock")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "api.sock")
			listenSocket(t, path, tt.sock)
			chmod(t, dir, tt.dirMode)
			t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
			den, err := socketAccess(path, tt.who)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.at == "" && den != nil:
				t.Fatalf("denied at %s (%s)", den.path, den.need())
			case tt.at == "":
				return
			case den == nil:
				t.Fatalf("allowed, want a denial at the %s", tt.at)
			}
			wantPath, wantBit := dir, uint32(permSearch)
			if tt.at == "sock" {
				wantPath, wantBit = path, permWrite
			}
			if den.path != wantPath || den.bit != wantBit || den.class != tt.class {
				t.Errorf("denial %+v, want %s bit %o class %s", den, wantPath, wantBit, tt.class)
			}
		})
	}

	t.Run("fail/missing socket", func(t *testing.T) {
		base := tempDir(t)
		chmod(t, base, 0o755)
		_, err := socketAccess(filepath.Join(base, "nope", "api.sock"), stranger)
		if !errors.Is(err, errSocketMissing) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("fail/not a socket", func(t *testing.T) {
		base := tempDir(t)
		chmod(t, base, 0o755)
		path := filepath.Join(base, "api.sock")
		if err := os.WriteFile(path, nil, 0o777); err != nil {
			t.Fatal(err)
		}
		if _, err := socketAccess(path, stranger); !errors.Is(err, errNotSocket) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("fail/symlinked directory is walked where it points", func(t *testing.T) {
		base := tempDir(t)
		chmod(t, base, 0o755)
		real := filepath.Join(base, "real")
		if err := os.Mkdir(real, 0o700); err != nil {
			t.Fatal(err)
		}
		listenSocket(t, filepath.Join(real, "api.sock"), 0o777)
		link := filepath.Join(base, "link")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		den, err := socketAccess(filepath.Join(link, "api.sock"), stranger)
		if err != nil || den == nil || den.path != real {
			t.Fatalf("got %+v %v, want a denial at %s", den, err, real)
		}
	})
}

// TestSocketAccessMatchesKernel runs, as root, a helper process as uid
// 65534 that connects to the socket, and checks the walk predicts the
// kernel's answer.
func TestSocketAccessMatchesKernel(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching uids needs root (CI runs as root)")
	}
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Skipf("uid 65534 is not in the user database: %v", err)
	}
	gid, _ := strconv.Atoi(nobody.Gid)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := tempDir(t)
	chmod(t, base, 0o755)
	helper := filepath.Join(base, "helper")
	copyFile(t, exe, helper)
	dir := filepath.Join(base, "sock")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "api.sock")
	listenSocket(t, path, 0o777)
	who := principal{uid: 65534, gids: []uint32{uint32(gid)}}
	for _, tt := range []struct {
		name     string
		dirMode  os.FileMode
		dirGroup int
		sock     os.FileMode
	}{
		{name: "open", dirMode: 0o755, dirGroup: 0, sock: 0o777},
		{name: "directory 0700", dirMode: 0o700, dirGroup: 0, sock: 0o777},
		{name: "socket 0755", dirMode: 0o755, dirGroup: 0, sock: 0o755},
		{name: "directory 0750 of nobody's group", dirMode: 0o750, dirGroup: gid, sock: 0o777},
		{name: "directory 0705 of nobody's group", dirMode: 0o705, dirGroup: gid, sock: 0o777},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Chown(dir, 0, tt.dirGroup); err != nil {
				t.Fatal(err)
			}
			chmod(t, dir, tt.dirMode)
			chmod(t, path, tt.sock)
			den, err := socketAccess(path, who)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(helper, "-test.run=^TestDoctorConnectHelper$")
			cmd.Env = append(os.Environ(), "HID_DOCTOR_CONNECT="+path)
			cmd.Dir = "/"
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: uint32(gid)}}
			out, err := cmd.CombinedOutput()
			kernelAllows := err == nil
			if kernelAllows != (den == nil) {
				t.Errorf("walk says denied=%v (%+v), kernel says allowed=%v: %v %s", den != nil, den, kernelAllows, err, out)
			}
		})
	}
}

// TestDoctorConnectHelper is the process TestSocketAccessMatchesKernel runs
// under another uid; it does nothing otherwise.
func TestDoctorConnectHelper(t *testing.T) {
	path := os.Getenv("HID_DOCTOR_CONNECT")
	if path == "" {
		t.Skip("helper process only")
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// deniedWorkloadAPI answers every fetch with the agent's refusal for a
// workload no entry matches.
type deniedWorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
}

func (deniedWorkloadAPI) FetchX509SVID(*workload.X509SVIDRequest, workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	return status.Error(codes.PermissionDenied, "no identity issued")
}

func startDeniedWorkloadAPI(t *testing.T) string {
	t.Helper()
	path := filepath.Join(tempDir(t), "api.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, deniedWorkloadAPI{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return path
}

// doctorRun runs doctor -output json at now and returns the exit code and findings by check.
func doctorRun(t *testing.T, now time.Time, args ...string) (int, map[string][]doctor.Finding, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got := runCLI(ctx, func() time.Time { return now }, append([]string{"doctor", "-output", "json"}, args...)...)
	if got.stderr != "" {
		t.Fatalf("stderr: %s", got.stderr)
	}
	var report doctor.Report
	if err := json.Unmarshal([]byte(got.stdout), &report); err != nil {
		t.Fatalf("%v: %s", err, got.stdout)
	}
	byCheck := map[string][]doctor.Finding{}
	for _, f := range report.Findings {
		byCheck[f.Check] = append(byCheck[f.Check], f)
	}
	return got.code, byCheck, got.stdout
}

func TestAgentDoctor(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := newTestCA(t, "neural-hive.local", now)
	svid := ca.svid("/ns/neural-hive-execution/sa/worker-agents", "")
	myUID := strconv.Itoa(os.Getuid())
	for _, tt := range []struct {
		name   string
		args   []string
		at     time.Duration // doctor's clock after the SVID was issued
		setup  func(f *fakeWorkloadAPI)
		exit   int
		check  string
		status doctor.Status
		detail string
		resol  string
	}{
		{name: "ok/socket reachable", check: "agent.socket", status: doctor.OK, detail: "uid " + myUID + " can reach "},
		{name: "ok/healthy", check: "agent.health", status: doctor.OK, detail: "Agent is healthy."},
		{name: "ok/identity", check: "agent.identity", status: doctor.OK,
			detail: "the caller (uid " + myUID + ") gets 1 X509-SVID: spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"},
		{name: "ok/fresh SVID under the runbook threshold", at: 20 * time.Minute, check: "agent.svid", status: doctor.OK, detail: "(in 40m0s of a 1h0m10s lifetime)"},
		{name: "warn/SVID not renewed at half-life", at: 40 * time.Minute, check: "agent.svid", status: doctor.Warn,
			detail: "(in 20m0s, under 1h0m0s) and was not renewed at half of its 1h0m10s lifetime", resol: "Forcar renovacao (restart pod)"},
		{name: "ok/small threshold", at: 40 * time.Minute, args: []string{"-threshold", "600"}, check: "agent.svid", status: doctor.OK},
		{name: "fail/expired SVID still served", at: 2 * time.Hour, exit: 1, check: "agent.svid", status: doctor.Crit, detail: "and is still served",
			resol: "jq '.svids[0].expires_at'"},
		{name: "warn/JWT TTL under the runbook's", args: []string{"-audience", "svc-a,svc-b"},
			setup: func(f *fakeWorkloadAPI) {
				f.fetchJWT = func(req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
					return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: svid.SpiffeId,
						Svid: ca.jwtSVID("/ns/neural-hive-execution/sa/worker-agents", req.Audience)}}}, nil
				}
			},
			check: "agent.jwt", status: doctor.Warn, detail: "(audience svc-a,svc-b) has a TTL of 5m0s, under the runbook's 3600s",
			resol: "Verificar TTL configurado (deve ser >= 3600s)"},
		{name: "fail/no JWT-SVID", args: []string{"-audience", "svc"}, exit: 1, check: "agent.jwt", status: doctor.Crit,
			detail: "no entry matches this workload's selectors", resol: "Se entry SPIFFE ausente: Recriar entry"},
		{name: "fail/agent not serving", exit: 1, setup: func(f *fakeWorkloadAPI) {
			f.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		}, check: "agent.health", status: doctor.Crit, detail: "agent reports NOT_SERVING",
			resol: "kubectl rollout restart daemonset/spire-agent -n spire-system"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeWorkloadAPI{x509: &workload.X509SVIDResponse{Svids: []*workload.X509SVID{svid}}}
			_, sock := startFakeWorkloadAPI(t, f)
			if tt.setup != nil {
				tt.setup(f)
			}
			exit, byCheck, out := doctorRun(t, now.Add(tt.at), append(tt.args, "-socketPath", sock)...)
			assertFinding(t, exit, byCheck, out, tt.exit, tt.check, tt.status, tt.detail, tt.resol)
		})
	}

	t.Run("fail/no entry matches the caller", func(t *testing.T) {
		exit, byCheck, out := doctorRun(t, now, "-socketPath", startDeniedWorkloadAPI(t), "-parentID", "spiffe://example.org/agent")
		assertFinding(t, exit, byCheck, out, 1, "agent.identity", doctor.Crit, "gets no identity: no entry matches this workload's selectors",
			"  spire-server entry create -spiffeID spiffe://example.org/ns/<namespace>/sa/<service-account> -parentID spiffe://example.org/agent -selector unix:uid:"+myUID+" -ttl 3600\n")
	})

	t.Run("fail/uid 65534 cannot reach the socket", func(t *testing.T) {
		if os.Getuid() == 65534 {
			t.Skip("runs as uid 65534")
		}
		dir, sock := startFakeWorkloadAPI(t, &fakeWorkloadAPI{x509: &workload.X509SVIDResponse{Svids: []*workload.X509SVID{svid}}})
		chmod(t, dir, 0o700)
		exit, byCheck, out := doctorRun(t, now, "-socketPath", sock, "-uid", "65534")
		assertFinding(t, exit, byCheck, out, 1, "agent.socket", doctor.Crit,
			dir+" needs search (x) permission on the directory (mode -rwx------", "  chmod o+x "+dir)
		// The caller's own checks still run.
		if h := byCheck["agent.health"]; len(h) != 1 || h[0].Status != doctor.OK {
			t.Errorf("health %+v", h)
		}
	})

	t.Run("fail/agent down", func(t *testing.T) {
		sock := filepath.Join(tempDir(t), "a", "api.sock")
		exit, byCheck, out := doctorRun(t, now, "-socketPath", sock)
		assertFinding(t, exit, byCheck, out, 1, "agent.socket", doctor.Crit, "socket does not exist", "spire-agent healthcheck -socketPath "+sock)
		if len(byCheck) != 1 {
			t.Errorf("checks after a missing socket:\n%s", out)
		}
	})

	t.Run("ok/pretty output", func(t *testing.T) {
		f := &fakeWorkloadAPI{x509: &workload.X509SVIDResponse{Svids: []*workload.X509SVID{svid}}}
		_, sock := startFakeWorkloadAPI(t, f)
		got := runCLI(t.Context(), func() time.Time { return now }, "doctor", "-socketPath", sock)
		lines := strings.Split(got.stdout, "\n")
		if got.code != 0 || len(lines) != 7 || !strings.HasPrefix(lines[0], "OK    agent.socket: uid ") || lines[1] != "OK    agent.health: Agent is healthy." ||
			lines[5] != "Summary: OK (4 OK, 0 WARN, 0 CRIT)" {
			t.Errorf("exit %d\n%s%s", got.code, got.stdout, got.stderr)
		}
	})
}

func assertFinding(t *testing.T, exit int, byCheck map[string][]doctor.Finding, out string, wantExit int, check string, wantStatus doctor.Status, detail, resol string) {
	t.Helper()
	if exit != wantExit {
		t.Errorf("exit %d, want %d\n%s", exit, wantExit, out)
	}
	for _, f := range byCheck[check] {
		if strings.Contains(f.Detail, detail) {
			if f.Status != wantStatus || !strings.Contains(f.Resolution, resol) {
				t.Errorf("finding %+v\nwant status %s and resolution with %q", f, wantStatus, resol)
			}
			if wantStatus == doctor.OK && f.Resolution != "" {
				t.Errorf("OK finding with a resolution: %q", f.Resolution)
			}
			return
		}
	}
	t.Errorf("no %s finding with %q in:\n%s", check, detail, out)
}
