// Package k8stest runs a fake Kubernetes API server and a fake kubelet on
// real HTTPS listeners for tests: they speak the TokenReview, Pod, Node and
// kubelet /pods JSON of Kubernetes, judge tokens the way the API server
// does (audience, expiry, bound pod) and can be stopped to test outages.
package k8stest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/k8s"
)

// DefaultAPIAudience is the audience the fake API server uses when a
// TokenReview names none, like a real cluster's issuer audience.
const DefaultAPIAudience = "https://kubernetes.default.svc.cluster.local"

// Token is what the fake API server knows about a service account token.
type Token struct {
	Namespace      string
	ServiceAccount string
	// PodName and PodUID bind the token to a pod (a projected token);
	// empty means a legacy secret-based token.
	PodName, PodUID string
	NodeName        string
	Audiences       []string
	Expiry          time.Time
	// Username overrides system:serviceaccount:<ns>:<sa> (a user token).
	Username string
}

// APIServer is a fake Kubernetes API server on HTTPS.
type APIServer struct {
	srv         *httptest.Server
	ca          *CA
	clientToken string

	mu       sync.Mutex
	tokens   map[string]Token
	pods     map[string][]byte
	nodes    map[string][]byte
	clock    func() time.Time
	ignore   bool
	reviews  []k8s.TokenReviewSpec
	requests int
}

// NewAPIServer starts a fake API server; it stops at the end of the test.
// Clients authenticate with the bearer token the server's KubeConfig names.
func NewAPIServer(tb testing.TB) *APIServer {
	tb.Helper()
	s := &APIServer{
		ca:          NewCA(tb),
		clientToken: randomHex(tb, 16),
		tokens:      map[string]Token{},
		pods:        map[string][]byte{},
		nodes:       map[string][]byte{},
		clock:       time.Now,
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = s.ca.ServerTLS(tb, "kubernetes.default.svc", "localhost")
	s.srv.StartTLS()
	tb.Cleanup(s.srv.Close)
	return s
}

// URL is the server's base URL.
func (s *APIServer) URL() string { return s.srv.URL }

// ClientToken is the bearer token the server accepts from clients.
func (s *APIServer) ClientToken() string { return s.clientToken }

// CA is the authority that signed the server's certificate.
func (s *APIServer) CA() *CA { return s.ca }

// Close stops the server: later requests fail to connect.
func (s *APIServer) Close() { s.srv.Close() }

// SetClock sets the time used to judge token expiry.
func (s *APIServer) SetClock(clock func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = clock
}

// IgnoreAudiences makes the server accept tokens whatever audiences a
// review asks for and report the token's own audiences, as an API server
// without audience support would.
func (s *APIServer) IgnoreAudiences(ignore bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignore = ignore
}

// AddToken registers a token the server will authenticate.
func (s *APIServer) AddToken(token string, t Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = t
}

// AddPod stores a pod's JSON under its namespace and name.
func (s *APIServer) AddPod(namespace, name string, podJSON []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods[namespace+"/"+name] = podJSON
}

// AddNode stores a node's JSON under its name.
func (s *APIServer) AddNode(name string, nodeJSON []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes[name] = nodeJSON
}

// Reviews returns the specs of the TokenReviews received so far.
func (s *APIServer) Reviews() []k8s.TokenReviewSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reviews)
}

// Requests counts the requests received so far.
func (s *APIServer) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// KubeConfig writes a kubeconfig (YAML, as kubectl writes it) for the
// server into dir and returns its path.
func (s *APIServer) KubeConfig(tb testing.TB, dir string) string {
	tb.Helper()
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
preferences: {}
clusters:
- cluster:
    certificate-authority-data: %s
    server: %s
  name: test
contexts:
- context:
    cluster: test
    namespace: spire-system
    user: spire-server
  name: test
current-context: test
users:
- name: spire-server
  user:
    token: %s
`, base64.StdEncoding.EncodeToString(s.ca.PEM()), s.srv.URL, s.clientToken)
	p := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// ServiceAccountDir writes token and ca.crt for the in-cluster
// configuration into dir.
func (s *APIServer) ServiceAccountDir(tb testing.TB, dir string) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(s.clientToken), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), s.ca.PEM(), 0o600); err != nil {
		tb.Fatal(err)
	}
}

func (s *APIServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+s.clientToken {
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authentication.k8s.io/v1/tokenreviews":
		s.tokenReview(w, r)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/"):
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/"), "/")
		if len(parts) != 3 || parts[1] != "pods" {
			writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
			return
		}
		s.mu.Lock()
		raw, ok := s.pods[parts[0]+"/"+parts[2]]
		s.mu.Unlock()
		if !ok {
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found", parts[2]))
			return
		}
		writeJSON(w, http.StatusOK, raw)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/nodes/"):
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/nodes/")
		s.mu.Lock()
		raw, ok := s.nodes[name]
		s.mu.Unlock()
		if !ok {
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("nodes %q not found", name))
			return
		}
		writeJSON(w, http.StatusOK, raw)
	default:
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	}
}

// tokenReview answers as kube-apiserver does: 201 Created with the review
// echoed and its status filled; invalid tokens are not HTTP errors.
func (s *APIServer) tokenReview(w http.ResponseWriter, r *http.Request) {
	var review k8s.TokenReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Kind != "TokenReview" || review.APIVersion != "authentication.k8s.io/v1" {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "invalid TokenReview")
		return
	}
	s.mu.Lock()
	s.reviews = append(s.reviews, review.Spec)
	t, known := s.tokens[review.Spec.Token]
	now, ignore := s.clock(), s.ignore
	s.mu.Unlock()

	want := review.Spec.Audiences
	if len(want) == 0 {
		want = []string{DefaultAPIAudience}
	}
	var matched []string
	for _, a := range want {
		if slices.Contains(t.Audiences, a) {
			matched = append(matched, a)
		}
	}
	st := k8s.TokenReviewStatus{}
	switch {
	case !known:
		st.Error = "[invalid bearer token, square/go-jose: compact JWS format must have three parts]"
	case !t.Expiry.IsZero() && !now.Before(t.Expiry):
		st.Error = "[invalid bearer token, service account token has expired]"
	case len(matched) == 0 && !ignore:
		st.Error = fmt.Sprintf("[invalid bearer token, token audiences %q is invalid for the target audiences %q]", t.Audiences, want)
	default:
		st.Authenticated = true
		st.Audiences = matched
		if ignore {
			st.Audiences = t.Audiences
		}
		st.User = k8s.UserInfo{
			Username: "system:serviceaccount:" + t.Namespace + ":" + t.ServiceAccount,
			UID:      "5a1c6a3e-0d64-4c54-8a0c-3d4c2a1b0f9e",
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + t.Namespace, "system:authenticated"},
		}
		if t.Username != "" {
			st.User.Username = t.Username
		}
		if t.PodName != "" {
			st.User.Extra = map[string][]string{
				"authentication.kubernetes.io/credential-id": {"JTI=" + strings.ReplaceAll(t.PodUID, "-", "")[:16]},
				"authentication.kubernetes.io/node-name":     {t.NodeName},
				k8s.ExtraPodName:                             {t.PodName},
				k8s.ExtraPodUID:                              {t.PodUID},
			}
		}
	}
	// The real server echoes the spec (token included) with metadata.
	out := map[string]any{
		"kind":       "TokenReview",
		"apiVersion": "authentication.k8s.io/v1",
		"metadata":   map[string]any{"creationTimestamp": nil},
		"spec":       review.Spec,
		"status":     st,
	}
	b, _ := json.Marshal(out)
	writeJSON(w, http.StatusCreated, b)
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	b, _ := json.Marshal(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
	writeJSON(w, code, b)
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}
