package workloadattest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/neural-hive/hive-identity/internal/k8s"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// Defaults of the k8s attestor, as SPIRE's.
const (
	DefaultK8sMaxPollAttempts   = 60
	DefaultK8sPollRetryInterval = 500 * time.Millisecond
	DefaultK8sNodeNameEnv       = "MY_NODE_NAME"
)

// Log keys SPIRE uses for the k8s attestor.
const (
	logPodUID      = "pod_uid"
	logContainerID = "container_id"
)

// ErrAmbiguousCgroups is returned when a process's cgroups name more than
// one container or pod (threat T6): the attestor picks none of them.
var ErrAmbiguousCgroups = errors.New("ambiguous cgroups")

// K8sConfig configures the k8s attestor (SPIRE's WorkloadAttestor "k8s"
// plugin_data; the HCL keys are in brackets).
type K8sConfig struct {
	// KubeletReadOnlyPort uses the kubelet's read-only HTTP port on
	// 127.0.0.1 [kubelet_read_only_port]; exclusive with KubeletSecurePort.
	KubeletReadOnlyPort int
	// KubeletSecurePort is the kubelet's HTTPS port; zero means 10250
	// [kubelet_secure_port].
	KubeletSecurePort int
	// MaxPollAttempts bounds how often the pod list is read while a new
	// container is not in it yet; zero means 60 [max_poll_attempts].
	MaxPollAttempts int
	// PollRetryInterval is the wait between those reads; zero means 500ms
	// [poll_retry_interval]. The pod list is cached for half of it.
	PollRetryInterval time.Duration
	// KubeletCAPath verifies the kubelet's certificate; empty means the
	// cluster CA of the agent's service account [kubelet_ca_path].
	KubeletCAPath string
	// SkipKubeletVerification accepts any kubelet certificate
	// [skip_kubelet_verification]. Threat T6: without it an unverified
	// kubelet is never trusted.
	SkipKubeletVerification bool
	// TokenPath authenticates the agent to the kubelet; empty means the
	// agent's service account token [token_path].
	TokenPath string
	// CertificatePath and PrivateKeyPath authenticate the agent with a
	// client certificate instead [certificate_path, private_key_path].
	CertificatePath, PrivateKeyPath string
	// UseAnonymousAuthentication sends no credentials
	// [use_anonymous_authentication].
	UseAnonymousAuthentication bool
	// NodeName is the kubelet's host name [node_name]. When empty, the
	// environment variable NodeNameEnv is read through Getenv; when that
	// is empty too, the kubelet is reached on 127.0.0.1 (host network) and
	// only its certificate chain is verified.
	NodeName string
	// NodeNameEnv names the variable holding the node name; empty means
	// MY_NODE_NAME [node_name_env].
	NodeNameEnv string
	// Getenv reads NodeNameEnv; nil means no variable is read.
	Getenv func(string) string
	// ReloadInterval is how long the kubelet credentials are reused; zero
	// means one minute [reload_interval].
	ReloadInterval time.Duration
	// DisableContainerSelectors leaves out container-name and
	// container-image, and attests a process of a known pod whose
	// container is not in the pod list yet [disable_container_selectors].
	DisableContainerSelectors bool
	// ProcDir is the proc file system; empty means "/proc".
	ProcDir string
	// Clock is the time for certificate checks and the pod-list cache;
	// nil means time.Now.
	Clock func() time.Time
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// K8s is the k8s workload attestor: it finds the pod UID and container ID
// of a process in /proc/<pid>/cgroup (cgroup v1 and v2; containerd, CRI-O
// and Docker; systemd and cgroupfs drivers), reads the pod from the node's
// kubelet, and returns SPIRE's k8s selectors. A process that is not in a
// container gets no selectors and no error. It is safe for concurrent use.
type K8s struct {
	cfg     K8sConfig
	kubelet *k8s.Kubelet
	log     *slog.Logger

	// mu serialises pod-list reads, so that concurrent attestations share
	// one kubelet request; cached is valid until cachedUntil.
	mu          sync.Mutex
	cached      *k8s.PodList
	cachedUntil time.Time
}

// NewK8s checks cfg and returns the attestor. It does not contact the
// kubelet.
func NewK8s(cfg K8sConfig) (*K8s, error) {
	if cfg.MaxPollAttempts <= 0 {
		cfg.MaxPollAttempts = DefaultK8sMaxPollAttempts
	}
	if cfg.PollRetryInterval <= 0 {
		cfg.PollRetryInterval = DefaultK8sPollRetryInterval
	}
	if cfg.ProcDir == "" {
		cfg.ProcDir = "/proc"
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.NodeNameEnv == "" {
		cfg.NodeNameEnv = DefaultK8sNodeNameEnv
	}
	host := cfg.NodeName
	if host == "" && cfg.Getenv != nil {
		host = cfg.Getenv(cfg.NodeNameEnv)
	}
	kubelet, err := k8s.NewKubelet(k8s.KubeletConfig{
		ReadOnlyPort:     cfg.KubeletReadOnlyPort,
		SecurePort:       cfg.KubeletSecurePort,
		Host:             host,
		CAFile:           cfg.KubeletCAPath,
		SkipVerification: cfg.SkipKubeletVerification,
		TokenFile:        cfg.TokenPath,
		CertFile:         cfg.CertificatePath,
		KeyFile:          cfg.PrivateKeyPath,
		Anonymous:        cfg.UseAnonymousAuthentication,
		ReloadInterval:   cfg.ReloadInterval,
		Clock:            cfg.Clock,
	})
	if err != nil {
		return nil, wrapErr(err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &K8s{cfg: cfg, kubelet: kubelet, log: log.With(telemetry.WorkloadAttestor, "k8s")}, nil
}

// Attest returns the k8s selectors of process pid ("k8s:ns:<namespace>",
// ...; see K8sSelectors), none when the process is not in a container. It
// blocks while the container is not yet in the kubelet's pod list, at most
// MaxPollAttempts reads, or until ctx ends.
func (k *K8s) Attest(ctx context.Context, pid int32) ([]string, error) {
	if pid <= 0 {
		return nil, wrapErr(fmt.Errorf("invalid pid %d", pid))
	}
	podUID, containerID, err := k.locate(pid)
	if err != nil {
		return nil, err
	}
	if containerID == "" {
		return nil, nil
	}
	log := k.log.With(telemetry.PID, pid, logPodUID, podUID, logContainerID, containerID)
	for attempt := 1; ; attempt++ {
		list, err := k.podList(ctx)
		if err != nil {
			return nil, wrapErr(err)
		}
		sel, err := k.match(list, podUID, containerID)
		if err != nil {
			log.Warn("Two pods found with same container Id", telemetry.Attempt, attempt)
			return nil, err
		}
		if sel != nil {
			return sel, nil
		}
		if attempt >= k.cfg.MaxPollAttempts {
			log.Warn("Container id not found; giving up", telemetry.Attempt, attempt)
			return nil, wrapErr(fmt.Errorf("no selectors found after max poll attempts (%d)", attempt))
		}
		t := time.NewTimer(k.cfg.PollRetryInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, wrapErr(fmt.Errorf("no selectors found: %w", ctx.Err()))
		}
	}
}

// match looks the container up in the pod list: in the pod podUID when it
// is known, else in every pod. It returns nil selectors when the container
// is not there (yet).
func (k *K8s) match(list *k8s.PodList, podUID, containerID string) ([]string, error) {
	var found []string
	for i := range list.Items {
		pod := &list.Items[i]
		if podUID != "" && pod.Metadata.UID != podUID {
			continue
		}
		var sel []string
		status, ok := findContainer(pod, containerID)
		switch {
		case ok:
			sel = K8sSelectors(pod, status, k.cfg.DisableContainerSelectors)
		case podUID != "" && k.cfg.DisableContainerSelectors:
			sel = K8sSelectors(pod, nil, true)
		}
		if sel == nil {
			continue
		}
		// T6: a container ID claimed by two pods identifies neither.
		if found != nil {
			return nil, wrapErr(errors.New("two pods found with same container Id"))
		}
		found = sel
	}
	return found, nil
}

func findContainer(pod *k8s.Pod, containerID string) (*k8s.ContainerStatus, bool) {
	for _, list := range [][]k8s.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for i := range list {
			if id := list[i].RuntimeID(); id != "" && id == containerID {
				return &list[i], true
			}
		}
	}
	return nil, false
}

// podList returns the kubelet's pod list, from the cache when it is fresh
// (half a poll interval, so each retry sees a new list).
func (k *K8s) podList(ctx context.Context) (*k8s.PodList, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.cfg.Clock()
	if k.cached != nil && now.Before(k.cachedUntil) {
		return k.cached, nil
	}
	list, err := k.kubelet.Pods(ctx)
	if err != nil {
		return nil, err
	}
	k.cached, k.cachedUntil = list, now.Add(k.cfg.PollRetryInterval/2)
	return list, nil
}

// K8sSelectors returns SPIRE's k8s selectors of a pod, and of its container
// when status is given and container selectors are not disabled:
//
//	k8s:sa, k8s:ns, k8s:node-name, k8s:pod-uid, k8s:pod-name,
//	k8s:pod-image-count, k8s:pod-init-image-count,
//	k8s:pod-image:<image or image ID>, k8s:pod-init-image:<...>,
//	k8s:pod-label:<key>:<value>, k8s:pod-owner:<kind>:<name>,
//	k8s:pod-owner-uid:<kind>:<uid>,
//	k8s:container-name:<name>, k8s:container-image:<image or image ID>
//
// Images, labels and owners are sorted.
func K8sSelectors(pod *k8s.Pod, status *k8s.ContainerStatus, noContainer bool) []string {
	const p = "k8s:"
	sel := []string{
		p + "sa:" + pod.Spec.ServiceAccountName,
		p + "ns:" + pod.Metadata.Namespace,
		p + "node-name:" + pod.Spec.NodeName,
		p + "pod-uid:" + pod.Metadata.UID,
		p + "pod-name:" + pod.Metadata.Name,
		p + "pod-image-count:" + strconv.Itoa(len(pod.Status.ContainerStatuses)),
		p + "pod-init-image-count:" + strconv.Itoa(len(pod.Status.InitContainerStatuses)),
	}
	for _, img := range images(pod.Status.ContainerStatuses...) {
		sel = append(sel, p+"pod-image:"+img)
	}
	for _, img := range images(pod.Status.InitContainerStatuses...) {
		sel = append(sel, p+"pod-init-image:"+img)
	}
	for _, key := range slices.Sorted(maps.Keys(pod.Metadata.Labels)) {
		sel = append(sel, p+"pod-label:"+key+":"+pod.Metadata.Labels[key])
	}
	for _, o := range pod.Metadata.OwnerReferences {
		sel = append(sel, p+"pod-owner:"+o.Kind+":"+o.Name, p+"pod-owner-uid:"+o.Kind+":"+o.UID)
	}
	if status != nil && !noContainer {
		sel = append(sel, p+"container-name:"+status.Name)
		for _, img := range images(*status) {
			sel = append(sel, p+"container-image:"+img)
		}
	}
	return sel
}

// images returns the distinct, non-empty image names and image IDs of
// containers, sorted: a selector can name an image by tag or by digest.
func images(containers ...k8s.ContainerStatus) []string {
	set := map[string]bool{}
	for _, c := range containers {
		for _, s := range []string{c.Image, c.ImageID} {
			if s != "" {
				set[s] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// locate reads /proc/<pid>/cgroup. A process that has exited or has no
// cgroup file is reported as an error by the caller's PID checks, not here:
// a missing file means "not in a container".
func (k *K8s) locate(pid int32) (podUID, containerID string, err error) {
	p := filepath.Join(k.cfg.ProcDir, strconv.FormatInt(int64(pid), 10), "cgroup")
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", wrapErr(fmt.Errorf("unable to obtain cgroups: %w", err))
	}
	defer f.Close()
	var paths []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path; the path may itself
		// hold colons.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		paths = append(paths, parts[2])
	}
	if err := sc.Err(); err != nil {
		return "", "", wrapErr(fmt.Errorf("unable to obtain cgroups: %w", err))
	}
	podUID, containerID, err = ContainerFromCgroups(paths)
	if err != nil {
		return "", "", wrapErr(err)
	}
	return podUID, containerID, nil
}

// ContainerFromCgroups finds the pod UID and container ID in the cgroup
// paths of one process (the third field of each /proc/<pid>/cgroup line).
//
// In a path, the pod is a segment holding "pod<UID>" (dashes or, for the
// systemd driver, underscores; or the 32-hex UID of a static pod), and the
// container is the 64-hex ID in that segment after the UID or in a later
// segment ("<id>", "cri-containerd-<id>.scope", "crio-<id>.scope",
// "docker-<id>.scope", "...slice:cri-containerd:<id>"). "." and ".."
// segments (paths seen from another cgroup namespace) are skipped. IDs
// before the pod segment (the node's own container under kind) are ignored.
// A path without a pod segment may name one container (CRI-O without pod
// UIDs, or a container outside Kubernetes); its pod is then found by
// container ID alone.
//
// Paths with a pod win over paths without. Threat T6: a path with two pod
// segments or two container IDs after the pod, or two paths that disagree,
// are ErrAmbiguousCgroups: a process that created a nested cgroup named
// like another container does not get that container's identity.
func ContainerFromCgroups(paths []string) (podUID, containerID string, err error) {
	havePod := false
	var loose []string // container IDs from paths without a pod
	for _, path := range paths {
		pod, id, err := containerFromPath(path)
		if err != nil {
			return "", "", err
		}
		switch {
		case pod == "" && id != "":
			if !slices.Contains(loose, id) {
				loose = append(loose, id)
			}
		case pod == "":
		case !havePod:
			havePod, podUID, containerID = true, pod, id
		case pod != podUID:
			return "", "", fmt.Errorf("%w: multiple pod UIDs found (%q, %q)", ErrAmbiguousCgroups, podUID, pod)
		case id != "" && containerID != "" && id != containerID:
			return "", "", fmt.Errorf("%w: multiple container IDs found (%q, %q)", ErrAmbiguousCgroups, containerID, id)
		case containerID == "":
			containerID = id
		}
	}
	if havePod {
		if containerID == "" {
			// In the pod's cgroup but in no container of it.
			return "", "", nil
		}
		return podUID, containerID, nil
	}
	switch len(loose) {
	case 0:
		return "", "", nil
	case 1:
		return "", loose[0], nil
	default:
		return "", "", fmt.Errorf("%w: multiple container IDs found (%q, %q)", ErrAmbiguousCgroups, loose[0], loose[1])
	}
}

var podUIDPattern = regexp.MustCompile(`^pod([0-9a-f]{8}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{12})`)

func containerFromPath(path string) (podUID, containerID string, err error) {
	type hit struct {
		seg, pos int
		value    string
	}
	var pods, ids []hit
	seg := 0
	for s := range strings.SplitSeq(path, "/") {
		if s == "" || s == "." || s == ".." {
			continue
		}
		for i := 0; i+3 <= len(s); i++ {
			if !strings.HasPrefix(s[i:], "pod") || (i > 0 && isAlnum(s[i-1])) {
				continue
			}
			m := podUIDPattern.FindStringSubmatch(s[i:])
			if m == nil || (i+len(m[0]) < len(s) && isAlnum(s[i+len(m[0])])) {
				continue
			}
			pods = append(pods, hit{seg, i, strings.ReplaceAll(m[1], "_", "-")})
			i += len(m[0]) - 1
		}
		for i := 0; i < len(s); {
			if !isHex(s[i]) {
				i++
				continue
			}
			j := i
			for j < len(s) && isHex(s[j]) {
				j++
			}
			if j-i == 64 && (i == 0 || !isAlnum(s[i-1])) && (j == len(s) || !isAlnum(s[j])) {
				ids = append(ids, hit{seg, i, s[i:j]})
			}
			i = j
		}
		seg++
	}
	switch len(pods) {
	case 0:
		var distinct []string
		for _, h := range ids {
			if !slices.Contains(distinct, h.value) {
				distinct = append(distinct, h.value)
			}
		}
		switch len(distinct) {
		case 0:
			return "", "", nil
		case 1:
			return "", distinct[0], nil
		}
		return "", "", fmt.Errorf("%w: multiple container IDs in cgroup path %q", ErrAmbiguousCgroups, path)
	case 1:
	default:
		return "", "", fmt.Errorf("%w: multiple pod UIDs in cgroup path %q", ErrAmbiguousCgroups, path)
	}
	pod := pods[0]
	for _, h := range ids {
		if h.seg < pod.seg || (h.seg == pod.seg && h.pos < pod.pos) {
			continue // the node's own container (kind, docker-in-docker)
		}
		if containerID != "" && containerID != h.value {
			return "", "", fmt.Errorf("%w: multiple container IDs in cgroup path %q", ErrAmbiguousCgroups, path)
		}
		containerID = h.value
	}
	return pod.value, containerID, nil
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
