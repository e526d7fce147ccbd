package k8stest

import (
	"encoding/json"
	"maps"
	"strings"
)

// Container describes one container of a fake pod.
type Container struct {
	Name    string
	Image   string // "ghcr.io/neural-hive/worker-agents:1.4.2"
	ImageID string // "ghcr.io/neural-hive/worker-agents@sha256:..."
	// ContainerID is "<runtime>://<64 hex>"; empty for a container that has
	// not started.
	ContainerID string
}

// Owner is a pod's controller.
type Owner struct {
	APIVersion, Kind, Name, UID string
}

// PodSpec describes a fake pod.
type PodSpec struct {
	Namespace, Name, UID string
	NodeName, HostIP     string
	ServiceAccount       string
	Labels               map[string]string
	Owner                *Owner
	Containers           []Container
	InitContainers       []Container
}

// Pod returns the pod's JSON as the API server and the kubelet serve it,
// with the fields attestation ignores (managed fields, volumes, conditions)
// present too.
func Pod(p PodSpec) []byte {
	b, err := json.Marshal(podObject(p))
	if err != nil {
		panic(err)
	}
	return b
}

// PodList returns a v1 PodList JSON holding pods (each from Pod).
func PodList(pods ...[]byte) []byte {
	items := make([]json.RawMessage, 0, len(pods))
	for _, p := range pods {
		items = append(items, json.RawMessage(p))
	}
	b, err := json.Marshal(map[string]any{
		"kind": "PodList", "apiVersion": "v1", "metadata": map[string]any{}, "items": items,
	})
	if err != nil {
		panic(err)
	}
	return b
}

func podObject(p PodSpec) map[string]any {
	meta := map[string]any{
		"name":              p.Name,
		"namespace":         p.Namespace,
		"uid":               p.UID,
		"resourceVersion":   "184467",
		"creationTimestamp": "2025-11-03T09:12:44Z",
		"annotations": map[string]any{
			"kubectl.kubernetes.io/restartedAt": "2025-11-03T09:12:40Z",
		},
		"managedFields": []any{map[string]any{
			"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
			"time": "2025-11-03T09:12:44Z", "fieldsType": "FieldsV1",
			"fieldsV1": map[string]any{"f:metadata": map[string]any{"f:labels": map[string]any{".": map[string]any{}}}},
		}},
	}
	if len(p.Labels) > 0 {
		meta["labels"] = p.Labels
	}
	if p.Owner != nil {
		meta["generateName"] = p.Owner.Name + "-"
		meta["ownerReferences"] = []any{map[string]any{
			"apiVersion": p.Owner.APIVersion, "kind": p.Owner.Kind, "name": p.Owner.Name,
			"uid": p.Owner.UID, "controller": true, "blockOwnerDeletion": true,
		}}
	}
	var specContainers, initSpec []any
	for _, c := range p.Containers {
		specContainers = append(specContainers, containerSpec(c))
	}
	for _, c := range p.InitContainers {
		initSpec = append(initSpec, containerSpec(c))
	}
	spec := map[string]any{
		"volumes": []any{map[string]any{
			"name": "kube-api-access-9xq2v",
			"projected": map[string]any{"defaultMode": 420, "sources": []any{
				map[string]any{"serviceAccountToken": map[string]any{"expirationSeconds": 3607, "path": "token"}},
				map[string]any{"configMap": map[string]any{"name": "kube-root-ca.crt", "items": []any{map[string]any{"key": "ca.crt", "path": "ca.crt"}}}},
			}},
		}},
		"containers":                    specContainers,
		"restartPolicy":                 "Always",
		"terminationGracePeriodSeconds": 30,
		"dnsPolicy":                     "ClusterFirst",
		"serviceAccountName":            p.ServiceAccount,
		"serviceAccount":                p.ServiceAccount,
		"nodeName":                      p.NodeName,
		"securityContext":               map[string]any{},
		"schedulerName":                 "default-scheduler",
		"tolerations": []any{
			map[string]any{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
		},
		"priority":           0,
		"enableServiceLinks": true,
		"preemptionPolicy":   "PreemptLowerPriority",
	}
	if initSpec != nil {
		spec["initContainers"] = initSpec
	}
	status := map[string]any{
		"phase": "Running",
		"conditions": []any{
			map[string]any{"type": "Initialized", "status": "True", "lastProbeTime": nil, "lastTransitionTime": "2025-11-03T09:12:44Z"},
			map[string]any{"type": "Ready", "status": "True", "lastProbeTime": nil, "lastTransitionTime": "2025-11-03T09:12:47Z"},
		},
		"hostIP":    p.HostIP,
		"hostIPs":   []any{map[string]any{"ip": p.HostIP}},
		"podIP":     "10.244.1.17",
		"podIPs":    []any{map[string]any{"ip": "10.244.1.17"}},
		"startTime": "2025-11-03T09:12:44Z",
		"qosClass":  "BestEffort",
	}
	status["containerStatuses"] = containerStatuses(p.Containers)
	if p.InitContainers != nil {
		status["initContainerStatuses"] = containerStatuses(p.InitContainers)
	}
	return map[string]any{"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": status}
}

func containerSpec(c Container) map[string]any {
	return map[string]any{
		"name": c.Name, "image": c.Image,
		"resources":              map[string]any{},
		"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
		"imagePullPolicy": "IfNotPresent",
		"volumeMounts": []any{map[string]any{
			"name": "kube-api-access-9xq2v", "readOnly": true,
			"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
		}},
	}
}

func containerStatuses(cs []Container) []any {
	out := []any{}
	for _, c := range cs {
		st := map[string]any{
			"name": c.Name, "image": c.Image, "imageID": c.ImageID,
			"ready": c.ContainerID != "", "restartCount": 0, "started": c.ContainerID != "",
			"lastState": map[string]any{},
		}
		if c.ContainerID != "" {
			st["containerID"] = c.ContainerID
			st["state"] = map[string]any{"running": map[string]any{"startedAt": "2025-11-03T09:12:46Z"}}
		} else {
			st["state"] = map[string]any{"waiting": map[string]any{"reason": "ContainerCreating"}}
		}
		out = append(out, st)
	}
	return out
}

// Node returns a node's JSON as the API server serves it.
func Node(name, uid, internalIP string, labels map[string]string) []byte {
	all := map[string]string{
		"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
		"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
	}
	maps.Copy(all, labels)
	b, err := json.Marshal(map[string]any{
		"kind": "Node", "apiVersion": "v1",
		"metadata": map[string]any{
			"name": name, "uid": uid, "resourceVersion": "183990",
			"creationTimestamp": "2025-10-28T14:01:09Z",
			"labels":            all,
			"annotations": map[string]any{
				"kubeadm.alpha.kubernetes.io/cri-socket":                 "unix:///run/containerd/containerd.sock",
				"node.alpha.kubernetes.io/ttl":                           "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
			},
		},
		"spec": map[string]any{"podCIDR": "10.244.1.0/24", "podCIDRs": []any{"10.244.1.0/24"}},
		"status": map[string]any{
			"capacity":    map[string]any{"cpu": "4", "memory": "16365236Ki", "pods": "110"},
			"allocatable": map[string]any{"cpu": "4", "memory": "16262836Ki", "pods": "110"},
			"conditions": []any{map[string]any{
				"type": "Ready", "status": "True", "reason": "KubeletReady",
				"message": "kubelet is posting ready status",
			}},
			"addresses": []any{
				map[string]any{"type": "InternalIP", "address": internalIP},
				map[string]any{"type": "Hostname", "address": name},
			},
			"daemonEndpoints": map[string]any{"kubeletEndpoint": map[string]any{"Port": 10250}},
			"nodeInfo": map[string]any{
				"kernelVersion": "6.8.0-48-generic", "osImage": "Ubuntu 24.04.1 LTS",
				"containerRuntimeVersion": "containerd://1.7.22", "kubeletVersion": "v1.31.2",
				"operatingSystem": "linux", "architecture": "amd64",
			},
		},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// ContainerID returns a deterministic 64-hex container ID derived from seed.
func ContainerID(seed string) string {
	const hexdigits = "0123456789abcdef"
	var b strings.Builder
	for i := 0; b.Len() < 64; i++ {
		c := seed[i%len(seed)] + byte(i)
		b.WriteByte(hexdigits[int(c)%16])
	}
	return b.String()
}
