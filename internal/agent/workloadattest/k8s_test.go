package workloadattest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/k8s/k8stest"
)

// IDs in testdata/cgroups and testdata/pods*.json.
const (
	uidWorker   = "0d4c5e6f-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
	cidWorker   = "6a0c8b8f41e1f5d1e7b7c2bd3c0f3b4e9d1a2c3b4d5e6f708192a3b4c5d6e7f8"
	cidInit     = "77d6f3e1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"
	uidOrch     = "2c48913c-b29f-11e7-9350-020968147796"
	cidOrch     = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"
	uidRegistry = "72f7f152-440c-66ac-9084-e0fc1d8a910c"
	cidRegistry = "b2a102854b4969b2ce98dc329c86b4fb2b06e4ad2cc8da9d8a7578c9cd2004a2"
	uidCRIO     = "e7c5dd9f-4b0e-4c5f-8a62-1d8c2c2c4a11"
	cidCRIO     = "45490e76e0878aaa4d9808f7d2eefba37f093c3efbba9838b6d8ab804d9bd814"
	uidDocker   = "daa5c7ee-3484-4533-af39-3591564fd03e"
	cidDocker   = "aff34703e5e1f89443e9a1bffcc80f43f74d4808a2dd22c8f88c08547b323934"
	uidKind     = "a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80"
	cidKind     = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6"
	uidStatic   = "c1d8b4a5e6f7a8b9c0d1e2f3a4b5c6d7"
	cidStatic   = "3f8a1c2d4e5b6a7980f1e2d3c4b5a69788f7e6d5c4b3a2918070f6e5d4c3b2a1"
	cidNoPod    = "5f0e7c8b9a1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f"
)

// cgroupFixtures maps each file of testdata/cgroups to what it says: cgroup
// v1 and v2 x containerd, CRI-O and Docker x systemd and cgroupfs drivers,
// plus kind, static pods, host processes and T6 forgeries.
var cgroupFixtures = []struct {
	file, podUID, containerID string
	ambiguous                 bool
}{
	{file: "v1-containerd-cgroupfs.txt", podUID: uidOrch, containerID: cidOrch},
	{file: "v1-containerd-systemd.txt", podUID: uidRegistry, containerID: cidRegistry},
	{file: "v1-containerd-systemd-colon.txt", podUID: uidRegistry, containerID: cidRegistry},
	{file: "v1-crio-cgroupfs.txt", podUID: uidCRIO, containerID: cidCRIO},
	{file: "v1-crio-systemd.txt", podUID: uidCRIO, containerID: cidCRIO},
	{file: "v1-crio-no-pod-uid.txt", containerID: cidCRIO},
	{file: "v1-docker-cgroupfs.txt", podUID: uidDocker, containerID: cidDocker},
	{file: "v1-docker-systemd.txt", podUID: uidDocker, containerID: cidDocker},
	{file: "v1-docker-systemd-dashes.txt", podUID: uidDocker, containerID: cidDocker},
	{file: "v1-kind-docker-desktop.txt", podUID: uidKind, containerID: cidKind},
	{file: "v1-host-process.txt"},
	{file: "v2-containerd-cgroupfs.txt", podUID: uidWorker, containerID: cidWorker},
	{file: "v2-containerd-cgroupfs-cgroupns.txt", podUID: uidWorker, containerID: cidWorker},
	{file: "v2-containerd-systemd.txt", podUID: uidWorker, containerID: cidWorker},
	{file: "v2-containerd-systemd-cgroupns.txt", podUID: uidWorker, containerID: cidWorker},
	{file: "v2-crio-cgroupfs.txt", podUID: uidCRIO, containerID: cidCRIO},
	{file: "v2-crio-systemd.txt", podUID: uidCRIO, containerID: cidCRIO},
	{file: "v2-docker-cgroupfs.txt", podUID: uidDocker, containerID: cidDocker},
	{file: "v2-docker-systemd.txt", podUID: uidDocker, containerID: cidDocker},
	{file: "v2-kind-containerd-systemd.txt", podUID: uidWorker, containerID: cidWorker},
	{file: "v2-static-pod-systemd.txt", podUID: uidStatic, containerID: cidStatic},
	{file: "v2-init-container.txt", podUID: uidWorker, containerID: cidInit},
	{file: "v2-docker-no-pod.txt", containerID: cidNoPod},
	{file: "v2-host-process.txt"},
	{file: "v2-user-session.txt"},
	{file: "t6-nested-container-id.txt", ambiguous: true},
	{file: "t6-nested-pod.txt", ambiguous: true},
	{file: "t6-v1-controllers-disagree.txt", ambiguous: true},
	{file: "t6-v1-pods-disagree.txt", ambiguous: true},
	{file: "t6-two-ids-in-segment.txt", ambiguous: true},
	{file: "t6-no-pod-two-ids.txt", ambiguous: true},
}

// procWith makes a proc directory where process pid has the cgroup file
// of testdata/cgroups/fixture.
func procWith(t *testing.T, pid int32, fixture string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "cgroups", fixture))
	if err != nil {
		t.Fatal(err)
	}
	proc := t.TempDir()
	dir := filepath.Join(proc, strconv.Itoa(int(pid)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return proc
}

func TestK8sCgroupFixtures(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("testdata", "cgroups"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(cgroupFixtures) {
		t.Fatalf("%d fixture files, %d in the table", len(entries), len(cgroupFixtures))
	}
	for _, tt := range cgroupFixtures {
		name := "ok/" + tt.file
		if tt.ambiguous {
			name = "fail/T6 " + tt.file
		}
		t.Run(name, func(t *testing.T) {
			a, err := NewK8s(K8sConfig{ProcDir: procWith(t, 7, tt.file)})
			if err != nil {
				t.Fatal(err)
			}
			pod, id, err := a.locate(7)
			if tt.ambiguous {
				if !errors.Is(err, ErrAmbiguousCgroups) {
					t.Fatalf("want ErrAmbiguousCgroups, got %q %q %v", pod, id, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pod != tt.podUID || id != tt.containerID {
				t.Fatalf("got pod %q container %q, want %q %q", pod, id, tt.podUID, tt.containerID)
			}
		})
	}
}

// testKubelet starts a fake kubelet serving testdata/<podsFile> and returns
// a config that reaches it with verification.
func testKubelet(t *testing.T, podsFile string) (*k8stest.Kubelet, K8sConfig) {
	t.Helper()
	kl := k8stest.NewKubelet(t)
	raw, err := os.ReadFile(filepath.Join("testdata", podsFile))
	if err != nil {
		t.Fatal(err)
	}
	kl.SetPods(raw)
	dir := t.TempDir()
	return kl, K8sConfig{
		KubeletSecurePort: kl.Port(),
		NodeName:          "localhost",
		KubeletCAPath:     kl.CA().WriteFile(t, dir, "kubelet-ca.crt"),
		TokenPath:         kl.WriteToken(t, dir),
		MaxPollAttempts:   3,
		PollRetryInterval: 20 * time.Millisecond,
	}
}

func TestK8sAttest(t *testing.T) {
	ctx := context.Background()
	workerSelectors := []string{
		"k8s:sa:worker-agents",
		"k8s:ns:neural-hive-execution",
		"k8s:node-name:worker-1",
		"k8s:pod-uid:" + uidWorker,
		"k8s:pod-name:worker-agents-7d9f8c6b5-x2k9q",
		"k8s:pod-image-count:1",
		"k8s:pod-init-image-count:1",
		"k8s:pod-image:ghcr.io/neural-hive/worker-agents:1.4.2",
		"k8s:pod-image:ghcr.io/neural-hive/worker-agents@sha256:5b0c5a1e8d3f7c2b9a6e4d1f0c8b7a69584736251403f2e1d0c9b8a7f6e5d4c3",
		"k8s:pod-init-image:busybox:1.36",
		"k8s:pod-init-image:docker.io/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7",
		"k8s:pod-label:app:worker-agents",
		"k8s:pod-label:pod-template-hash:7d9f8c6b5",
		"k8s:pod-owner:ReplicaSet:worker-agents-7d9f8c6b5",
		"k8s:pod-owner-uid:ReplicaSet:1e2d3c4b-5a69-4788-9f0e-1d2c3b4a5968",
	}
	workerContainer := []string{
		"k8s:container-name:worker",
		"k8s:container-image:ghcr.io/neural-hive/worker-agents:1.4.2",
		"k8s:container-image:ghcr.io/neural-hive/worker-agents@sha256:5b0c5a1e8d3f7c2b9a6e4d1f0c8b7a69584736251403f2e1d0c9b8a7f6e5d4c3",
	}

	t.Run("ok/runbook worker-agents pod, all selectors", func(t *testing.T) {
		kl, cfg := testKubelet(t, "pods.json")
		cfg.ProcDir = procWith(t, 4, "v2-containerd-systemd-cgroupns.txt")
		a, err := NewK8s(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Attest(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if want := append(slices.Clone(workerSelectors), workerContainer...); !slices.Equal(got, want) {
			t.Fatalf("selectors\n got %q\nwant %q", got, want)
		}
		if kl.Requests() != 1 {
			t.Fatalf("%d kubelet requests", kl.Requests())
		}
	})

	for _, tt := range []struct {
		fixture, pods string
		want          []string // a subset of the selectors
	}{
		{fixture: "v1-containerd-cgroupfs.txt", pods: "pods.json", want: []string{"k8s:ns:neural-hive-orchestration", "k8s:sa:orchestrator-dynamic", "k8s:container-name:orchestrator"}},
		{fixture: "v1-containerd-systemd.txt", pods: "pods.json", want: []string{"k8s:sa:service-registry", "k8s:container-name:registry"}},
		{fixture: "v2-crio-systemd.txt", pods: "pods.json", want: []string{"k8s:ns:openshift-monitoring", "k8s:pod-owner:DaemonSet:node-exporter"}},
		{fixture: "v1-crio-no-pod-uid.txt", pods: "pods.json", want: []string{"k8s:pod-name:node-exporter-k2j4h", "k8s:container-name:node-exporter"}},
		{fixture: "v1-docker-systemd.txt", pods: "pods.json", want: []string{"k8s:ns:legacy", "k8s:container-image:docker-pullable://nginx@sha256:5555555555555555555555555555555555555555555555555555555555555555"}},
		{fixture: "v1-kind-docker-desktop.txt", pods: "pods.json", want: []string{"k8s:ns:kind-test", "k8s:pod-image-count:1"}},
		{fixture: "v2-static-pod-systemd.txt", pods: "pods.json", want: []string{"k8s:pod-uid:" + uidStatic, "k8s:pod-owner:Node:worker-1", "k8s:sa:"}},
		{fixture: "v2-init-container.txt", pods: "pods.json", want: []string{"k8s:container-name:wait-for-spire", "k8s:container-image:busybox:1.36"}},
	} {
		t.Run("ok/"+tt.fixture, func(t *testing.T) {
			_, cfg := testKubelet(t, tt.pods)
			cfg.ProcDir = procWith(t, 5, tt.fixture)
			a, err := NewK8s(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Attest(ctx, 5)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("missing %q in %q", w, got)
				}
			}
			for _, s := range got {
				if !strings.HasPrefix(s, "k8s:") {
					t.Errorf("selector %q without the k8s: type", s)
				}
			}
		})
	}

	for _, fixture := range []string{"v2-host-process.txt", "v1-host-process.txt", "v2-user-session.txt"} {
		t.Run("ok/outside any pod: no selectors, no kubelet call/"+fixture, func(t *testing.T) {
			kl, cfg := testKubelet(t, "pods.json")
			cfg.ProcDir = procWith(t, 6, fixture)
			a, _ := NewK8s(cfg)
			got, err := a.Attest(ctx, 6)
			if err != nil || got != nil {
				t.Fatalf("got %q %v", got, err)
			}
			if kl.Requests() != 0 {
				t.Fatal("kubelet asked for a host process")
			}
		})
	}

	t.Run("ok/process gone: no selectors", func(t *testing.T) {
		a, _ := NewK8s(K8sConfig{ProcDir: t.TempDir()})
		if got, err := a.Attest(ctx, 99); err != nil || got != nil {
			t.Fatalf("got %q %v", got, err)
		}
	})

	for _, fixture := range []string{"t6-nested-container-id.txt", "t6-nested-pod.txt", "t6-v1-controllers-disagree.txt", "t6-two-ids-in-segment.txt"} {
		t.Run("fail/T6 ambiguous cgroups refused/"+fixture, func(t *testing.T) {
			kl, cfg := testKubelet(t, "pods.json")
			cfg.ProcDir = procWith(t, 6, fixture)
			a, _ := NewK8s(cfg)
			got, err := a.Attest(ctx, 6)
			if !errors.Is(err, ErrAmbiguousCgroups) || got != nil {
				t.Fatalf("got %q %v", got, err)
			}
			if kl.Requests() != 0 {
				t.Fatal("kubelet asked for an ambiguous process")
			}
		})
	}

	t.Run("ok/T6 forged mountinfo is not read", func(t *testing.T) {
		// A workload with mount privileges can mount a cgroup file system
		// whose root names another pod's container; only the kernel's
		// /proc/<pid>/cgroup decides.
		kl, cfg := testKubelet(t, "pods.json")
		cfg.ProcDir = procWith(t, 6, "v2-host-process.txt")
		forged := "1543 1542 0:32 /../../kubepods-besteffort-pod" + strings.ReplaceAll(uidWorker, "-", "_") +
			".slice/cri-containerd-" + cidWorker + ".scope /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw\n"
		if err := os.WriteFile(filepath.Join(cfg.ProcDir, "6", "mountinfo"), []byte(forged), 0o644); err != nil {
			t.Fatal(err)
		}
		a, _ := NewK8s(cfg)
		got, err := a.Attest(ctx, 6)
		if err != nil || got != nil || kl.Requests() != 0 {
			t.Fatalf("got %q %v (%d kubelet requests)", got, err, kl.Requests())
		}
	})

	t.Run("fail/T6 container claimed by two pods", func(t *testing.T) {
		_, cfg := testKubelet(t, "pods_duplicate_container.json")
		cfg.ProcDir = procWith(t, 6, "v1-crio-no-pod-uid.txt")
		a, _ := NewK8s(cfg)
		got, err := a.Attest(ctx, 6)
		if err == nil || got != nil || !strings.Contains(err.Error(), "two pods found with same container Id") {
			t.Fatalf("got %q %v", got, err)
		}
	})

	t.Run("ok/T6 pod UID known: the twin pod is not consulted", func(t *testing.T) {
		_, cfg := testKubelet(t, "pods_duplicate_container.json")
		cfg.ProcDir = procWith(t, 6, "v2-crio-systemd.txt")
		a, _ := NewK8s(cfg)
		got, err := a.Attest(ctx, 6)
		if err != nil || !slices.Contains(got, "k8s:pod-name:node-exporter-k2j4h") {
			t.Fatalf("got %q %v", got, err)
		}
	})

	t.Run("fail/T6 unverified kubelet", func(t *testing.T) {
		kl, cfg := testKubelet(t, "pods.json")
		cfg.ProcDir = procWith(t, 4, "v2-containerd-systemd.txt")
		cfg.KubeletCAPath = k8stest.NewCA(t).WriteFile(t, t.TempDir(), "other.crt")
		a, _ := NewK8s(cfg)
		got, err := a.Attest(ctx, 4)
		if err == nil || got != nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("got %q %v", got, err)
		}
		cfg.NodeName = "" // 127.0.0.1: chain verified without the name
		a, _ = NewK8s(cfg)
		if _, err := a.Attest(ctx, 4); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("chain-only verification accepted another CA: %v", err)
		}
		cfg.SkipKubeletVerification = true
		a, _ = NewK8s(cfg)
		if got, err := a.Attest(ctx, 4); err != nil || !slices.Contains(got, "k8s:sa:worker-agents") {
			t.Fatalf("skip_kubelet_verification: %q %v", got, err)
		}
		_ = kl
	})

	t.Run("ok/node name from the environment", func(t *testing.T) {
		_, cfg := testKubelet(t, "pods.json")
		cfg.ProcDir = procWith(t, 4, "v2-containerd-systemd.txt")
		cfg.NodeName = ""
		cfg.Getenv = func(k string) string {
			if k == "MY_NODE_NAME" {
				return "localhost"
			}
			return ""
		}
		a, _ := NewK8s(cfg)
		if got, err := a.Attest(ctx, 4); err != nil || !slices.Contains(got, "k8s:sa:worker-agents") {
			t.Fatalf("got %q %v", got, err)
		}
	})

	t.Run("ok/new pod appears after two polls", func(t *testing.T) {
		kl, cfg := testKubelet(t, "pods.json")
		creating, _ := os.ReadFile(filepath.Join("testdata", "pods_container_creating.json"))
		kl.OnPods(func(n int) []byte {
			if n <= 2 {
				return creating
			}
			return nil
		})
		cfg.ProcDir = procWith(t, 4, "v2-containerd-systemd.txt")
		a, _ := NewK8s(cfg)
		got, err := a.Attest(ctx, 4)
		if err != nil || !slices.Contains(got, "k8s:container-name:worker") {
			t.Fatalf("got %q %v", got, err)
		}
		if kl.Requests() != 3 {
			t.Fatalf("%d kubelet requests, want 3", kl.Requests())
		}
	})

	t.Run("ok/container selectors disabled: a known pod before its container starts", func(t *testing.T) {
		_, cfg := testKubelet(t, "pods_container_creating.json")
		cfg.ProcDir = procWith(t, 4, "v2-containerd-systemd.txt")
		cfg.DisableContainerSelectors = true
		a, _ := NewK8s(cfg)
		got, err := a.Attest(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(got, "k8s:sa:worker-agents") || slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "k8s:container-") }) {
			t.Fatalf("got %q", got)
		}
	})

	t.Run("fail/container never appears: bounded retries", func(t *testing.T) {
		kl, cfg := testKubelet(t, "pods.json")
		cfg.ProcDir = procWith(t, 4, "v2-docker-no-pod.txt")
		a, _ := NewK8s(cfg)
		got, err := a.Attest(ctx, 4)
		if err == nil || got != nil || !strings.Contains(err.Error(), "no selectors found after max poll attempts (3)") {
			t.Fatalf("got %q %v", got, err)
		}
		if kl.Requests() != 3 {
			t.Fatalf("%d kubelet requests, want 3", kl.Requests())
		}
	})

	t.Run("fail/cancelled while waiting", func(t *testing.T) {
		_, cfg := testKubelet(t, "pods.json")
		cfg.ProcDir = procWith(t, 4, "v2-docker-no-pod.txt")
		cfg.MaxPollAttempts = 1000
		cfg.PollRetryInterval = time.Hour
		a, _ := NewK8s(cfg)
		ctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(50 * time.Millisecond); cancel() }()
		if _, err := a.Attest(ctx, 4); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("fail/kubelet down", func(t *testing.T) {
		kl, cfg := testKubelet(t, "pods.json")
		kl.Close()
		cfg.ProcDir = procWith(t, 4, "v2-containerd-systemd.txt")
		a, _ := NewK8s(cfg)
		if _, err := a.Attest(ctx, 4); err == nil || !strings.Contains(err.Error(), "kubelet pods") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("ok/concurrent attestations share the cached pod list", func(t *testing.T) {
		kl, cfg := testKubelet(t, "pods.json")
		cfg.ProcDir = procWith(t, 4, "v2-containerd-systemd.txt")
		now := time.Now()
		cfg.Clock = func() time.Time { return now }
		a, _ := NewK8s(cfg)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := a.Attest(ctx, 4); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if kl.Requests() != 1 {
			t.Fatalf("%d kubelet requests for 8 attestations", kl.Requests())
		}
	})
}

func TestK8sConfigErrors(t *testing.T) {
	if _, err := NewK8s(K8sConfig{KubeletReadOnlyPort: 10255, KubeletSecurePort: 10250}); err == nil || !strings.Contains(err.Error(), "cannot use both") {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewK8s(K8sConfig{CertificatePath: "/c"}); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewK8s(K8sConfig{}); err != nil {
		t.Fatal(err)
	}
}
