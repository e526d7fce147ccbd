package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/k8s/k8stest"
)

// The Kubernetes objects of the end-to-end test: the chart's cluster name,
// one node running the spire-agent DaemonSet pod and the worker-agents pod.
const (
	k8sCluster     = "neural-hive"
	k8sNodeName    = "worker-node-1"
	k8sNodeUID     = "7c3f1b52-94a0-4d1e-b2c5-0f6e8a9d1c34"
	k8sAgentPod    = "spire-agent-x7k2p"
	k8sAgentPodUID = "0b4f6d2e-1a3c-4e5f-8a7b-9c0d1e2f3a4b"
	k8sWorkerPod   = "worker-agents-6d8f9c7b5-q2w4e"
	k8sWorkerUID   = "3e9a7c1d-5b2f-4a6e-9d8c-1f0e2b3a4c5d"
	k8sWorkerID    = "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"
)

// k8sEnv is the fake cluster of the test: an API server that knows the
// agent's and the workload's service account tokens, pods and node, and
// the node's kubelet listing the pods.
type k8sEnv struct {
	api           *k8stest.APIServer
	kubelet       *k8stest.Kubelet
	dir           string
	kubeconfig    string            // the server's kube_config_file
	pods          map[string][]byte // "<namespace>/<name>" -> pod JSON
	expiry        time.Time         // of both tokens
	agentToken    string            // spire-system:spire-agent, bound to the agent pod
	workerToken   string            // neural-hive-execution:worker-agents, bound to the worker pod
	workerCgroup  string            // /proc/<pid>/cgroup of a process in the worker container
	outsideCgroup string            // /proc/<pid>/cgroup of a process in no pod
}

func newK8sEnv(tb testing.TB) *k8sEnv {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	e := &k8sEnv{api: k8stest.NewAPIServer(tb), kubelet: k8stest.NewKubelet(tb), dir: dir}
	e.agentToken = fakeJWT(k8sAgentPodUID)
	e.workerToken = fakeJWT(k8sWorkerUID)
	e.expiry = time.Now().Add(time.Hour)

	agentPod := k8stest.Pod(k8stest.PodSpec{
		Namespace: "spire-system", Name: k8sAgentPod, UID: k8sAgentPodUID,
		NodeName: k8sNodeName, HostIP: "10.0.1.21", ServiceAccount: "spire-agent",
		Labels: map[string]string{"app": "spire-agent", "controller-revision-hash": "5f7d8c9b6"},
		Owner:  &k8stest.Owner{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "spire-agent", UID: "a1b2c3d4-0000-4000-8000-000000000001"},
		Containers: []k8stest.Container{{
			Name: "spire-agent", Image: "ghcr.io/neural-hive/spire-agent:1.13.3",
			ImageID:     "ghcr.io/neural-hive/spire-agent@sha256:" + k8stest.ContainerID("agent-image"),
			ContainerID: "containerd://" + k8stest.ContainerID("spire-agent"),
		}},
	})
	workerContainer := k8stest.ContainerID("worker-agents")
	workerPod := k8stest.Pod(k8stest.PodSpec{
		Namespace: "neural-hive-execution", Name: k8sWorkerPod, UID: k8sWorkerUID,
		NodeName: k8sNodeName, HostIP: "10.0.1.21", ServiceAccount: "worker-agents",
		Labels: map[string]string{"app": "worker-agents", "pod-template-hash": "6d8f9c7b5"},
		Owner:  &k8stest.Owner{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "worker-agents-6d8f9c7b5", UID: "a1b2c3d4-0000-4000-8000-000000000002"},
		Containers: []k8stest.Container{{
			Name: "worker", Image: "ghcr.io/neural-hive/worker-agents:1.4.2",
			ImageID:     "ghcr.io/neural-hive/worker-agents@sha256:" + k8stest.ContainerID("worker-image"),
			ContainerID: "containerd://" + workerContainer,
		}},
	})
	orchestratorPod := k8stest.Pod(k8stest.PodSpec{
		Namespace: "neural-hive-orchestration", Name: "orchestrator-dynamic-7b9c5d4f8-k3m7n", UID: "5d2c8e4f-7a1b-4c3d-8e9f-0a1b2c3d4e5f",
		NodeName: k8sNodeName, HostIP: "10.0.1.21", ServiceAccount: "orchestrator-dynamic",
		Containers: []k8stest.Container{{
			Name: "orchestrator", Image: "ghcr.io/neural-hive/orchestrator-dynamic:1.4.2",
			ContainerID: "containerd://" + k8stest.ContainerID("orchestrator"),
		}},
	})

	e.pods = map[string][]byte{
		"spire-system/" + k8sAgentPod:           agentPod,
		"neural-hive-execution/" + k8sWorkerPod: workerPod,
	}
	e.load(e.api)
	e.kubelet.SetPods(k8stest.PodList(agentPod, workerPod, orchestratorPod))

	// cgroup v2 with the systemd driver, as containerd on a kubeadm node
	// writes it: the pod UID with underscores in the pod slice, the
	// container ID in the scope.
	e.workerCgroup = fmt.Sprintf("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/cri-containerd-%s.scope\n",
		strings.ReplaceAll(k8sWorkerUID, "-", "_"), workerContainer)
	// A process on the node outside Kubernetes: a login session.
	e.outsideCgroup = "0::/user.slice/user-0.slice/session-4.scope\n"
	return e
}

// load gives api the cluster's pods, node and tokens.
func (e *k8sEnv) load(api *k8stest.APIServer) {
	for key, pod := range e.pods {
		ns, name, _ := strings.Cut(key, "/")
		api.AddPod(ns, name, pod)
	}
	api.AddNode(k8sNodeName, k8stest.Node(k8sNodeName, k8sNodeUID, "10.0.1.21", nil))
	api.AddToken(e.agentToken, k8stest.Token{
		Namespace: "spire-system", ServiceAccount: "spire-agent",
		PodName: k8sAgentPod, PodUID: k8sAgentPodUID, NodeName: k8sNodeName,
		Audiences: []string{"spire-server"}, Expiry: e.expiry,
	})
	// A workload's own projected token, for the spire-server audience:
	// authentic, but its service account is not on the allow list.
	api.AddToken(e.workerToken, k8stest.Token{
		Namespace: "neural-hive-execution", ServiceAccount: "worker-agents",
		PodName: k8sWorkerPod, PodUID: k8sWorkerUID, NodeName: k8sNodeName,
		Audiences: []string{"spire-server"}, Expiry: e.expiry,
	})
}

// fakeJWT returns a string shaped like a projected service account token;
// the fake API server only compares it.
func fakeJWT(seed string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"k8s"}`)) + "." +
		enc([]byte(`{"sub":"`+seed+`"}`)) + "." + enc([]byte(k8stest.ContainerID(seed)))
}

// procDir is the agent's proc_dir: the test writes <pid>/cgroup there.
func (e *k8sEnv) procDir() string { return filepath.Join(e.dir, "proc") }

// setCgroup writes the cgroup file the agent reads for pid.
func (e *k8sEnv) setCgroup(tb testing.TB, pid int, content string) {
	tb.Helper()
	d := filepath.Join(e.procDir(), strconv.Itoa(pid))
	if err := os.MkdirAll(d, 0o755); err != nil {
		tb.Fatal(err)
	}
	// Write then rename: the agent never reads a half-written file.
	tmp := filepath.Join(d, ".cgroup.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d, "cgroup")); err != nil {
		tb.Fatal(err)
	}
}

// newK8sServer starts a spire-server whose only node attestor is k8s_psat
// for the chart's cluster, reaching the fake API server through a
// kubeconfig, with the Prometheus exporter on metricsPort.
func newK8sServer(tb testing.TB, e *k8sEnv, metricsPort int) *server {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	e.kubeconfig = e.api.KubeConfig(tb, dir)
	s := &server{t: tb, dir: dir, conf: filepath.Join(dir, "server.conf"), socket: filepath.Join(dir, "s", "api.sock"), port: freePort(tb)}
	conf := fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = "neural-hive.local"
    data_dir = %q
    log_level = "DEBUG"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    NodeAttestor "k8s_psat" {
        plugin_data {
            clusters = {
                %q = {
                    service_account_allow_list = ["spire-system:spire-agent"]
                    audience = ["spire-server"]
                    kube_config_file = %q
                }
            }
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = %q
        }
    }
}

telemetry {
    Prometheus {
        host = "127.0.0.1"
        port = %d
    }
}
`, s.port, s.socket, filepath.Join(dir, "data"), filepath.Join(dir, "data", "datastore.sqlite3"),
		k8sCluster, e.kubeconfig, filepath.Join(dir, "data", "keys.json"), metricsPort)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

// prepareK8sAgent writes the configuration of an agent as the chart's
// DaemonSet runs it: NodeAttestor k8s_psat with the projected token in
// token_path, WorkloadAttestor k8s on the node's kubelet (secure port,
// kubelet CA, the kubelet token) reading cgroups under the test's
// proc_dir, and WorkloadAttestor unix beside it; with a metricsPort, the
// Prometheus exporter. It does not start it.
func prepareK8sAgent(tb testing.TB, srv *server, e *k8sEnv, psatToken string, metricsPort int) *agentProc {
	tb.Helper()
	a := prepareAgent(tb, srv)
	secrets := filepath.Join(a.dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		tb.Fatal(err)
	}
	tokenPath := filepath.Join(secrets, "spire-agent")
	if err := os.WriteFile(tokenPath, []byte(psatToken), 0o600); err != nil {
		tb.Fatal(err)
	}
	kubeletDir := filepath.Join(a.dir, "kubelet")
	if err := os.MkdirAll(kubeletDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	kubeletToken := e.kubelet.WriteToken(tb, kubeletDir)
	kubeletCA := e.kubelet.CA().WriteFile(tb, kubeletDir, "kubelet-ca.crt")
	conf := fmt.Sprintf(`agent {
    data_dir = %q
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_bundle_path = %q
    trust_domain = "neural-hive.local"
}

plugins {
    NodeAttestor "k8s_psat" {
        plugin_data {
            cluster = %q
            token_path = %q
        }
    }
    KeyManager "disk" {
        plugin_data {
            directory = %q
        }
    }
    WorkloadAttestor "k8s" {
        plugin_data {
            node_name = "localhost"
            kubelet_secure_port = %d
            kubelet_ca_path = %q
            token_path = %q
            poll_retry_interval = "100ms"
            max_poll_attempts = 5
            proc_dir = %q
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`, filepath.Join(a.dir, "data"), srv.port, a.socket, filepath.Join(a.dir, "bootstrap.pem"),
		k8sCluster, tokenPath, filepath.Join(a.dir, "data"),
		e.kubelet.Port(), kubeletCA, kubeletToken, e.procDir())
	if metricsPort != 0 {
		conf += fmt.Sprintf(`
telemetry {
    Prometheus {
        host = "127.0.0.1"
        port = %d
    }
}
`, metricsPort)
	}
	if err := os.WriteFile(a.conf, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	return a
}

// k8sAgentJSON is one agent of `agent list -output json`.
type k8sAgentJSON struct {
	AttestationType string `json:"attestation_type"`
	ID              struct {
		TrustDomain string `json:"trust_domain"`
		Path        string `json:"path"`
	} `json:"id"`
	Selectors []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"selectors"`
	Banned      bool `json:"banned"`
	CanReattest bool `json:"can_reattest"`
}

func listAgents(tb testing.TB, s *server, args ...string) []k8sAgentJSON {
	tb.Helper()
	out, errOut, code := s.cli(append([]string{"agent", "list", "-output", "json"}, args...)...)
	if code != 0 {
		tb.Fatalf("agent list: %s", errOut)
	}
	var v struct {
		Agents []k8sAgentJSON `json:"agents"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		tb.Fatalf("agent list output %q: %v", out, err)
	}
	return v.Agents
}

// scrape returns the Prometheus exposition on 127.0.0.1:port.
func scrape(tb testing.TB, port int) string {
	tb.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// sampleValue returns the value of the sample whose name and labels are
// exactly line (`name{a="x",b="y"}`), 0 when it is absent.
func sampleValue(tb testing.TB, exposition, line string) float64 {
	tb.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + ` (\S+)$`).FindStringSubmatch(exposition)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// fetchInChild runs `spire-agent api fetch jwt` as a new process whose
// cgroup file (under the agent's proc_dir) is cgroup, written before the
// process connects: sh learns its PID, waits for a line on stdin and
// execs the CLI in the same process.
func fetchInChild(tb testing.TB, e *k8sEnv, a *agentProc, cgroup string) (string, string, int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `read _ && exec "$0" api fetch jwt -audience spire-test -socketPath "$1"`,
		filepath.Join(binDir, "spire-agent"), a.socket)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	e.setCgroup(tb, cmd.Process.Pid, cgroup)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		tb.Fatal(err)
	}
	_ = stdin.Close()
	code := 0
	if err := cmd.Wait(); err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return stdout.String(), stderr.String(), code
}

// TestK8s_EndToEnd runs issue 6's end-to-end verification without a
// cluster: spire-server with NodeAttestor k8s_psat against a fake API
// server, spire-agent with k8s_psat and WorkloadAttestor k8s against a
// fake kubelet, the chart's node-alias entry and the runbook's
// worker-agents entry; a process whose cgroup file puts it in the
// worker-agents pod gets the runbook's ID through go-spiffe.
func TestK8s_EndToEnd(t *testing.T) {
	e := newK8sEnv(t)
	metricsPort := freePort(t)
	s := newK8sServer(t, e, metricsPort)

	// The chart's bootstrap entries, before any agent exists.
	s.createEntry("-node", "-spiffeID", agentAlias,
		"-selector", "k8s_psat:cluster:"+k8sCluster,
		"-selector", "k8s_psat:agent_ns:spire-system",
		"-selector", "k8s_psat:agent_sa:spire-agent")
	s.createEntry("-parentID", agentAlias, "-spiffeID", k8sWorkerID,
		"-selector", "k8s:ns:neural-hive-execution",
		"-selector", "k8s:sa:worker-agents")

	a := prepareK8sAgent(t, s, e, e.agentToken, 0)
	a.start("")

	// The agent attested with k8s_psat: its ID is built from the cluster
	// and the node UID, and it carries SPIRE's node selectors.
	wantAgentID := "spiffe://neural-hive.local/spire/agent/k8s_psat/" + k8sCluster + "/" + k8sNodeUID
	agents := listAgents(t, s)
	if len(agents) != 1 {
		t.Fatalf("agents: %+v", agents)
	}
	ag := agents[0]
	if got := "spiffe://" + ag.ID.TrustDomain + ag.ID.Path; got != wantAgentID || ag.AttestationType != "k8s_psat" {
		t.Fatalf("agent %s attested by %q, want %s by k8s_psat", got, ag.AttestationType, wantAgentID)
	}
	var sels []string
	for _, sel := range ag.Selectors {
		sels = append(sels, sel.Type+":"+sel.Value)
	}
	for _, want := range []string{
		"k8s_psat:cluster:" + k8sCluster,
		"k8s_psat:agent_ns:spire-system",
		"k8s_psat:agent_sa:spire-agent",
		"k8s_psat:agent_pod_name:" + k8sAgentPod,
		"k8s_psat:agent_pod_uid:" + k8sAgentPodUID,
		"k8s_psat:agent_node_name:" + k8sNodeName,
		"k8s_psat:agent_node_uid:" + k8sNodeUID,
	} {
		if !slices.Contains(sels, want) {
			t.Errorf("agent selectors %q lack %q", sels, want)
		}
	}
	if !ag.CanReattest {
		t.Error("k8s_psat agent cannot re-attest")
	}
	// `agent show` prints them as SPIRE does.
	out, errOut, code := s.cli("agent", "show", "-spiffeID", wantAgentID)
	for _, want := range []string{
		"Attestation type  : k8s_psat\n",
		"Can re-attest     : true\n",
		"Selectors         : k8s_psat:agent_ns:spire-system\n",
		"Selectors         : k8s_psat:agent_node_uid:" + k8sNodeUID + "\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("agent show: exit %d, want %q in:\n%s%s", code, want, out, errOut)
		}
	}
	// The node-alias entry's selectors find it.
	if got := listAgents(t, s, "-selector", "k8s_psat:agent_ns:spire-system", "-selector", "k8s_psat:agent_sa:spire-agent"); len(got) != 1 {
		t.Fatalf("agent list -selector k8s_psat:agent_ns:spire-system: %+v", got)
	}
	// The server asked the API server about the token for its audience.
	reviews := e.api.Reviews()
	if len(reviews) == 0 || !slices.Equal(reviews[0].Audiences, []string{"spire-server"}) {
		t.Fatalf("TokenReviews %+v, want one for audience spire-server", reviews)
	}

	// This test process is the worker-agents container.
	e.setCgroup(t, os.Getpid(), e.workerCgroup)
	c := wlClient(t, a)
	waitFor(t, "the worker-agents SVID", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		svid, err := c.FetchX509SVID(ctx)
		if err != nil {
			return false
		}
		if svid.ID.String() != k8sWorkerID {
			t.Fatalf("SVID %s, want %s", svid.ID, k8sWorkerID)
		}
		bundles, err := c.FetchX509Bundles(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, bundles); err != nil {
			t.Fatalf("SVID does not verify against the bundle: %v", err)
		}
		return true
	})
	if e.kubelet.Requests() == 0 {
		t.Fatal("the agent never read the kubelet's pod list")
	}

	// Another process on the node, in no pod, while the worker is served:
	// only unix selectors, no identity.
	out, errOut, code = fetchInChild(t, e, a, e.outsideCgroup)
	if code == 0 || !strings.Contains(errOut, "PermissionDenied") {
		t.Fatalf("process outside any pod: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// A process in the worker container gets the worker's JWT-SVID too.
	out, errOut, code = fetchInChild(t, e, a, e.workerCgroup)
	if code != 0 || !strings.Contains(out, k8sWorkerID) {
		t.Fatalf("process in the worker container: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// The same process, once its cgroup file no longer names the pod, is
	// refused: attestation reads the file on every call.
	e.setCgroup(t, os.Getpid(), e.outsideCgroup)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := c.FetchX509SVID(ctx)
	cancel()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("fetch outside any pod: %v, want PermissionDenied", err)
	}

	// A restarted agent keeps its k8s_psat identity (one agent, same ID)
	// and serves the worker again.
	e.setCgroup(t, os.Getpid(), e.workerCgroup)
	a.stop()
	a.start("")
	if got := listAgents(t, s); len(got) != 1 || "spiffe://"+got[0].ID.TrustDomain+got[0].ID.Path != wantAgentID {
		t.Fatalf("agents after the agent restarted: %+v", got)
	}
	c2 := wlClient(t, a)
	waitFor(t, "the worker-agents SVID after the agent restarted", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		svid, err := c2.FetchX509SVID(ctx)
		return err == nil && svid.ID.String() == k8sWorkerID
	})

	// T7: an agent presenting an authentic projected token of a service
	// account outside service_account_allow_list (a workload's own token)
	// is refused and exits; it is not listed.
	rogue := prepareK8sAgent(t, s, e, e.workerToken, 0)
	rogue.startNoWait("")
	if !rogue.waitExit(30 * time.Second) {
		t.Fatalf("agent with a worker-agents token still running:\n%s", rogue.logs.String())
	}
	if rogue.exitErr == nil {
		t.Fatalf("agent with a worker-agents token exited cleanly:\n%s", rogue.logs.String())
	}
	if logs := rogue.logs.String(); !strings.Contains(logs, "PermissionDenied") ||
		!strings.Contains(logs, `\"neural-hive-execution:worker-agents\" is not an allowed service account`) {
		t.Errorf("refused agent's logs do not give the server's reason:\n%s", logs)
	}
	if got := listAgents(t, s); len(got) != 1 {
		t.Fatalf("agents after the refused attestation: %+v", got)
	}
	metrics := scrape(t, metricsPort)
	if v := sampleValue(t, metrics, `spire_server_node_attestations_total{attestor="k8s_psat",result="success"}`); v != 1 {
		t.Errorf("k8s_psat successes %v, want 1", v)
	}
	if v := sampleValue(t, metrics, `spire_server_node_attestations_total{attestor="k8s_psat",result="failure"}`); v < 1 {
		t.Errorf("k8s_psat failures %v, want at least 1", v)
	}
}

// TestK8s_APIServerDown: while the API server cannot be reached the server
// fails k8s_psat attestation closed (it never trusts the token unchecked),
// the agent says why, counts each failure and retries; once the API server
// answers again the agent attests.
func TestK8s_APIServerDown(t *testing.T) {
	e := newK8sEnv(t)
	serverMetrics := freePort(t)
	s := newK8sServer(t, e, serverMetrics)
	e.api.Close()

	agentMetrics := freePort(t)
	a := prepareK8sAgent(t, s, e, e.agentToken, agentMetrics)
	a.startNoWait("")
	waitFor(t, "two retried attestations", 20*time.Second, func() bool {
		return strings.Count(a.logs.String(), "Node attestation failed; retrying") >= 2
	})
	if a.waitExit(0) {
		t.Fatalf("agent exited while the API server was down:\n%s", a.logs.String())
	}
	if logs := a.logs.String(); !strings.Contains(logs, "code = Internal desc = failed to attest: k8s_psat: unable to validate token with TokenReview API") {
		t.Errorf("agent's retries do not say the token could not be reviewed:\n%s", logs)
	}
	if got := listAgents(t, s); len(got) != 0 {
		t.Fatalf("agents while the API server is down: %+v", got)
	}
	if v := sampleValue(t, scrape(t, serverMetrics), `spire_server_node_attestations_total{attestor="k8s_psat",result="failure"}`); v < 2 {
		t.Errorf("server k8s_psat failures %v, want at least 2", v)
	}
	if v := sumSamples(t, scrape(t, agentMetrics), `spire_agent_attestation_errors_total`, `attestor="k8s_psat"`, `type="node"`); v < 2 {
		t.Errorf("agent node attestation errors %v, want at least 2", v)
	}

	// The API server is back (a new one: the kubeconfig is read on each
	// request).
	api := k8stest.NewAPIServer(t)
	e.load(api)
	api.KubeConfig(t, filepath.Dir(e.kubeconfig))
	a.waitHealthy()
	wantAgentID := "spiffe://neural-hive.local/spire/agent/k8s_psat/" + k8sCluster + "/" + k8sNodeUID
	if got := listAgents(t, s); len(got) != 1 || "spiffe://"+got[0].ID.TrustDomain+got[0].ID.Path != wantAgentID {
		t.Fatalf("agents after the API server came back: %+v", got)
	}
}

// sumSamples sums the samples of name whose label set holds every one of
// labels (`key="value"`).
func sumSamples(tb testing.TB, exposition, name string, labels ...string) float64 {
	tb.Helper()
	var sum float64
	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`\{([^}]*)\} (\S+)$`).FindAllStringSubmatch(exposition, -1) {
		have := strings.Split(m[1], ",")
		if !containsAll(have, labels) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			tb.Fatal(err)
		}
		sum += v
	}
	return sum
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
