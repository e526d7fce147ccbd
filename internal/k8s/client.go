package k8s

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// DefaultServiceAccountDir is where Kubernetes mounts a pod's service
// account token and the cluster CA.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

const (
	defaultTimeout = 10 * time.Second
	// maxBody bounds what the client reads from one response.
	maxBody = 32 << 20
)

// ClientConfig says how to reach one cluster's API server.
type ClientConfig struct {
	// KubeConfigFile is a kubeconfig (YAML or JSON) whose current context
	// names the cluster and credentials; empty means the in-cluster
	// configuration (the pod's service account token and CA).
	KubeConfigFile string
	// Getenv looks up KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT
	// for the in-cluster configuration. Nil, or unset variables, mean
	// https://kubernetes.default.svc.
	Getenv func(string) string
	// ServiceAccountDir holds token and ca.crt for the in-cluster
	// configuration; empty means DefaultServiceAccountDir.
	ServiceAccountDir string
	// Timeout bounds each request; zero means 10s.
	Timeout time.Duration
	// Clock is the time used to verify the API server's certificate; nil
	// means time.Now.
	Clock func() time.Time
}

// Client calls the API server of one cluster. It reads its configuration
// (kubeconfig, token and certificate files) again for every request, so that
// rotated tokens and certificates are picked up, and it keeps no
// connections between requests. It is safe for concurrent use.
type Client struct {
	cfg ClientConfig
}

// NewClient returns a client for cfg. It does not contact the API server
// or read any file.
func NewClient(cfg ClientConfig) *Client {
	if cfg.ServiceAccountDir == "" {
		cfg.ServiceAccountDir = DefaultServiceAccountDir
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Client{cfg: cfg}
}

// ReviewToken asks the API server (TokenReview, authentication.k8s.io/v1)
// whether token is valid for one of audiences (none: the API server's own
// audiences) and returns the review's status. A transport failure or a
// non-2xx answer is an error; an invalid token is not: the status says
// Authenticated false and, usually, why in Error.
func (c *Client) ReviewToken(ctx context.Context, token string, audiences []string) (*TokenReviewStatus, error) {
	body, err := json.Marshal(TokenReview{
		APIVersion: "authentication.k8s.io/v1",
		Kind:       "TokenReview",
		Spec:       TokenReviewSpec{Token: token, Audiences: audiences},
	})
	if err != nil {
		return nil, wrapErr(err)
	}
	var review TokenReview
	if err := c.do(ctx, http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", body, &review); err != nil {
		return nil, fmt.Errorf("k8s: token review: %w", err)
	}
	return &review.Status, nil
}

// GetPod returns the pod namespace/name.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*Pod, error) {
	if err := checkName("namespace", namespace); err != nil {
		return nil, err
	}
	if err := checkName("pod name", name); err != nil {
		return nil, err
	}
	var pod Pod
	if err := c.do(ctx, http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(namespace)+"/pods/"+url.PathEscape(name), nil, &pod); err != nil {
		return nil, fmt.Errorf("k8s: get pod %s/%s: %w", namespace, name, err)
	}
	return &pod, nil
}

// GetNode returns the node name.
func (c *Client) GetNode(ctx context.Context, name string) (*Node, error) {
	if err := checkName("node name", name); err != nil {
		return nil, err
	}
	var node Node
	if err := c.do(ctx, http.MethodGet, "/api/v1/nodes/"+url.PathEscape(name), nil, &node); err != nil {
		return nil, fmt.Errorf("k8s: get node %s: %w", name, err)
	}
	return &node, nil
}

// checkName refuses names that could change the request path: Kubernetes
// object names never hold "/" and are never "." or "..".
func checkName(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/%\x00") {
		return wrapErr(fmt.Errorf("invalid %s %q", what, name))
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, apiPath string, body []byte, out any) error {
	rc, err := c.restConfig()
	if err != nil {
		return err
	}
	u := *rc.server
	u.Path = path.Join("/", u.Path, apiPath)
	u.RawPath = ""
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case rc.token != "":
		req.Header.Set("Authorization", "Bearer "+rc.token)
	case rc.username != "":
		req.SetBasicAuth(rc.username, rc.password)
	}
	transport := &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     rc.tls,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: c.cfg.Timeout,
		DialContext:         (&net.Dialer{Timeout: c.cfg.Timeout}).DialContext,
	}
	defer transport.CloseIdleConnections()
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

// decodeResponse decodes a 2xx body into out, or turns the answer into an
// *APIError.
func decodeResponse(resp *http.Response, out any) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if len(raw) > maxBody {
		return fmt.Errorf("response larger than %d bytes", maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := &APIError{StatusCode: resp.StatusCode}
		var st Status
		if json.Unmarshal(raw, &st) == nil && st.Kind == "Status" {
			apiErr.Reason, apiErr.Message = st.Reason, st.Message
		} else {
			apiErr.Message = strings.TrimSpace(string(raw[:min(len(raw), 256)]))
		}
		return apiErr
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// restConfig is one request's view of the configuration.
type restConfig struct {
	server             *url.URL
	tls                *tls.Config
	token              string
	username, password string
}

func (c *Client) restConfig() (*restConfig, error) {
	if c.cfg.KubeConfigFile != "" {
		return loadKubeConfig(c.cfg.KubeConfigFile, c.cfg.Clock)
	}
	return c.inCluster()
}

func (c *Client) inCluster() (*restConfig, error) {
	host, port := "kubernetes.default.svc", "443"
	if c.cfg.Getenv != nil {
		if h, p := c.cfg.Getenv("KUBERNETES_SERVICE_HOST"), c.cfg.Getenv("KUBERNETES_SERVICE_PORT"); h != "" && p != "" {
			host, port = h, p
		}
	}
	token, err := readToken(filepath.Join(c.cfg.ServiceAccountDir, "token"))
	if err != nil {
		return nil, fmt.Errorf("k8s: in-cluster configuration: %w", err)
	}
	roots, err := readCertPool(filepath.Join(c.cfg.ServiceAccountDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("k8s: in-cluster configuration: %w", err)
	}
	return &restConfig{
		server: &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)},
		tls:    &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Time: c.cfg.Clock},
		token:  token,
	}, nil
}

// readToken reads a bearer token file; surrounding white space is not part
// of the token.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return token, nil
}

func readCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	return certPool(b, file)
}

func certPool(pemBytes []byte, source string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("no certificates in CA " + source)
	}
	return pool, nil
}
