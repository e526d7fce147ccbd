// Package k8s is the small Kubernetes client that attestation needs: the API
// server's TokenReview, Pod and Node endpoints (for the server's k8s_psat
// attestor) and the kubelet's /pods endpoint (for the agent's k8s workload
// attestor). It speaks the real JSON of those APIs with net/http and
// encoding/json and holds only the fields attestation reads.
//
// It does not watch, cache or retry: callers decide how often to ask. It is
// deliberately not k8s.io/client-go, which would add several hundred packages
// to both binaries for four HTTP requests.
package k8s

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ObjectMeta is the part of metav1.ObjectMeta attestation reads.
type ObjectMeta struct {
	Name            string            `json:"name,omitempty"`
	Namespace       string            `json:"namespace,omitempty"`
	UID             string            `json:"uid,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	OwnerReferences []OwnerReference  `json:"ownerReferences,omitempty"`
}

// OwnerReference is metav1.OwnerReference.
type OwnerReference struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name,omitempty"`
	UID        string `json:"uid,omitempty"`
	Controller *bool  `json:"controller,omitempty"`
}

// Pod is the part of corev1.Pod attestation reads.
type Pod struct {
	APIVersion string     `json:"apiVersion,omitempty"`
	Kind       string     `json:"kind,omitempty"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       PodSpec    `json:"spec"`
	Status     PodStatus  `json:"status"`
}

// PodSpec is the part of corev1.PodSpec attestation reads.
type PodSpec struct {
	NodeName           string `json:"nodeName,omitempty"`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// PodStatus is the part of corev1.PodStatus attestation reads.
type PodStatus struct {
	Phase                 string            `json:"phase,omitempty"`
	HostIP                string            `json:"hostIP,omitempty"`
	PodIP                 string            `json:"podIP,omitempty"`
	ContainerStatuses     []ContainerStatus `json:"containerStatuses,omitempty"`
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses,omitempty"`
}

// ContainerStatus is the part of corev1.ContainerStatus attestation reads.
// ContainerID is "<runtime>://<id>" (containerd://, cri-o://, docker://).
type ContainerStatus struct {
	Name        string `json:"name"`
	Image       string `json:"image"`
	ImageID     string `json:"imageID"`
	ContainerID string `json:"containerID,omitempty"`
	Ready       bool   `json:"ready"`
}

// RuntimeID returns the container ID without its "<runtime>://" scheme, or
// "" when the container has not started.
func (s ContainerStatus) RuntimeID() string {
	if s.ContainerID == "" {
		return ""
	}
	u, err := url.Parse(s.ContainerID)
	if err != nil || u.Scheme == "" {
		return ""
	}
	return u.Host
}

// PodList is corev1.PodList, as the kubelet's /pods returns it.
type PodList struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Items      []Pod  `json:"items"`
}

// Node is the part of corev1.Node attestation reads.
type Node struct {
	APIVersion string     `json:"apiVersion,omitempty"`
	Kind       string     `json:"kind,omitempty"`
	Metadata   ObjectMeta `json:"metadata"`
}

// TokenReview is authentication.k8s.io/v1 TokenReview.
type TokenReview struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Spec       TokenReviewSpec   `json:"spec"`
	Status     TokenReviewStatus `json:"status,omitzero"`
}

// TokenReviewSpec is authentication.k8s.io/v1 TokenReviewSpec.
type TokenReviewSpec struct {
	Token     string   `json:"token"`
	Audiences []string `json:"audiences,omitempty"`
}

// TokenReviewStatus is authentication.k8s.io/v1 TokenReviewStatus.
type TokenReviewStatus struct {
	Authenticated bool     `json:"authenticated,omitempty"`
	User          UserInfo `json:"user,omitzero"`
	Audiences     []string `json:"audiences,omitempty"`
	Error         string   `json:"error,omitempty"`
}

// UserInfo is authentication.k8s.io/v1 UserInfo.
type UserInfo struct {
	Username string              `json:"username,omitempty"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// Keys of UserInfo.Extra that the API server sets for a projected service
// account token bound to a pod.
const (
	ExtraPodName = "authentication.kubernetes.io/pod-name"
	ExtraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// ServiceAccount returns the namespace and name of a service account user
// ("system:serviceaccount:<ns>:<name>").
func (u UserInfo) ServiceAccount() (namespace, name string, err error) {
	parts := strings.Split(u.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return "", "", wrapErr(fmt.Errorf("user %q is not a service account", u.Username))
	}
	if parts[2] == "" || parts[3] == "" {
		return "", "", wrapErr(fmt.Errorf("user %q has an empty namespace or name", u.Username))
	}
	return parts[2], parts[3], nil
}

// BoundPod returns the name and UID of the pod a projected token is bound
// to, from the user's extra fields.
func (u UserInfo) BoundPod() (name, uid string, err error) {
	name, err = u.single(ExtraPodName)
	if err != nil {
		return "", "", err
	}
	uid, err = u.single(ExtraPodUID)
	if err != nil {
		return "", "", err
	}
	return name, uid, nil
}

func (u UserInfo) single(key string) (string, error) {
	v, ok := u.Extra[key]
	switch {
	case !ok:
		return "", wrapErr(fmt.Errorf("token is not bound to a pod: no %s", key))
	case len(v) != 1:
		return "", wrapErr(fmt.Errorf("expected one %s, got %d", key, len(v)))
	case v[0] == "":
		return "", wrapErr(fmt.Errorf("%s is empty", key))
	}
	return v[0], nil
}

// Status is metav1.Status, the body of the API server's error responses.
type Status struct {
	Kind    string `json:"kind,omitempty"`
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    int    `json:"code,omitempty"`
}

// APIError is a non-2xx answer of the API server or the kubelet.
type APIError struct {
	StatusCode int
	Reason     string // metav1.Status reason ("NotFound", "Forbidden"), when given
	Message    string
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("k8s: %d %s: %s", e.StatusCode, e.Reason, e.Message)
	}
	return fmt.Sprintf("k8s: unexpected status %d", e.StatusCode)
}

// IsNotFound reports whether err is an APIError with status 404.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.StatusCode == 404
}

func wrapErr(err error) error {
	return fmt.Errorf("k8s: %w", err)
}
