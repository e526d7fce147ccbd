package k8s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Kubelet defaults, as SPIRE's k8s workload attestor has them.
const (
	DefaultKubeletSecurePort     = 10250
	DefaultKubeletReloadInterval = time.Minute
)

// KubeletConfig says how to reach the kubelet of the agent's node.
type KubeletConfig struct {
	// ReadOnlyPort, when set, uses plain HTTP on 127.0.0.1:<port> with no
	// credentials (the kubelet's read-only port, typically 10255).
	ReadOnlyPort int
	// SecurePort is the HTTPS port; zero means 10250.
	SecurePort int
	// Host is the kubelet's host name for the secure port, usually the node
	// name; the kubelet certificate must be valid for it. Empty means
	// 127.0.0.1, and then only the certificate chain is verified, not the
	// name (the kubelet certificate does not name 127.0.0.1).
	Host string
	// CAFile verifies the kubelet's certificate; empty means the cluster CA
	// in the pod's service account directory.
	CAFile string
	// SkipVerification accepts any kubelet certificate. Threat T6: pod data
	// from an unverified kubelet decides selectors; only set it when the
	// kubelet's serving certificate cannot be verified.
	SkipVerification bool
	// TokenFile is the bearer token for the secure port; empty means the
	// pod's service account token. Not used with a client certificate or
	// Anonymous.
	TokenFile string
	// CertFile and KeyFile authenticate the agent with a client
	// certificate instead of a token.
	CertFile, KeyFile string
	// Anonymous sends no credentials on the secure port.
	Anonymous bool
	// ReloadInterval is how long loaded credentials and CAs are reused;
	// zero means one minute.
	ReloadInterval time.Duration
	// Timeout bounds each request; zero means 10s.
	Timeout time.Duration
	// Clock is the time for certificate checks and reloads; nil means time.Now.
	Clock func() time.Time
}

// Kubelet reads the pod list of the node's kubelet. It is safe for
// concurrent use.
type Kubelet struct {
	cfg KubeletConfig

	mu         sync.Mutex
	client     *http.Client
	token      string
	loadedAt   time.Time
	loadedOnce bool
}

// NewKubelet checks cfg and returns a kubelet client; credentials are read
// on first use and again after each ReloadInterval.
func NewKubelet(cfg KubeletConfig) (*Kubelet, error) {
	switch {
	case cfg.ReadOnlyPort > 0 && cfg.SecurePort > 0:
		return nil, wrapErr(errors.New("cannot use both the read-only and secure port"))
	case (cfg.CertFile == "") != (cfg.KeyFile == ""):
		return nil, wrapErr(errors.New("the certificate path and the private key path must be given together"))
	case cfg.Anonymous && (cfg.TokenFile != "" || cfg.CertFile != ""):
		return nil, wrapErr(errors.New("anonymous authentication is exclusive with token and certificate authentication"))
	}
	if cfg.SecurePort <= 0 {
		cfg.SecurePort = DefaultKubeletSecurePort
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = DefaultKubeletReloadInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.CAFile == "" {
		cfg.CAFile = DefaultServiceAccountDir + "/ca.crt"
	}
	if cfg.TokenFile == "" {
		cfg.TokenFile = DefaultServiceAccountDir + "/token"
	}
	return &Kubelet{cfg: cfg}, nil
}

// URL returns the pods endpoint the client calls.
func (k *Kubelet) URL() string {
	if k.cfg.ReadOnlyPort > 0 {
		return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(k.cfg.ReadOnlyPort)) + "/pods"
	}
	host := k.cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(k.cfg.SecurePort)) + "/pods"
}

// Pods returns the kubelet's pod list (GET /pods).
func (k *Kubelet) Pods(ctx context.Context) (*PodList, error) {
	client, token, err := k.load()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.URL(), nil)
	if err != nil {
		return nil, wrapErr(err)
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("k8s: kubelet pods: %w", err)
	}
	defer resp.Body.Close()
	var list PodList
	if err := decodeResponse(resp, &list); err != nil {
		return nil, fmt.Errorf("k8s: kubelet pods: %w", err)
	}
	return &list, nil
}

// load returns the HTTP client and token, reloading them from disk when
// they are older than ReloadInterval.
func (k *Kubelet) load() (*http.Client, string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.cfg.Clock()
	if k.loadedOnce && now.Sub(k.loadedAt) < k.cfg.ReloadInterval {
		return k.client, k.token, nil
	}
	if k.cfg.ReadOnlyPort > 0 {
		k.client = &http.Client{Transport: &http.Transport{Proxy: nil}}
		k.token, k.loadedAt, k.loadedOnce = "", now, true
		return k.client, "", nil
	}

	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, Time: k.cfg.Clock}
	switch {
	case k.cfg.SkipVerification:
		tlsCfg.InsecureSkipVerify = true //nolint:gosec // skip_kubelet_verification
	default:
		roots, err := readCertPool(k.cfg.CAFile)
		if err != nil {
			return nil, "", fmt.Errorf("k8s: kubelet CA: %w", err)
		}
		if k.cfg.Host == "" {
			// 127.0.0.1 is not in the kubelet's certificate: verify the
			// chain ourselves, without the name.
			tlsCfg.InsecureSkipVerify = true //nolint:gosec // verified below
			tlsCfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
				return verifyChain(raw, roots, k.cfg.Clock())
			}
		} else {
			tlsCfg.RootCAs = roots
		}
	}
	token := ""
	switch {
	case k.cfg.Anonymous:
	case k.cfg.CertFile != "":
		pair, err := tls.LoadX509KeyPair(k.cfg.CertFile, k.cfg.KeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("k8s: kubelet client certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	default:
		t, err := readToken(k.cfg.TokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("k8s: kubelet token: %w", err)
		}
		token = t
	}
	if k.client != nil {
		k.client.CloseIdleConnections()
	}
	k.client = &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: tlsCfg, TLSHandshakeTimeout: k.cfg.Timeout}}
	k.token, k.loadedAt, k.loadedOnce = token, now, true
	return k.client, token, nil
}

func verifyChain(raw [][]byte, roots *x509.CertPool, now time.Time) error {
	if len(raw) == 0 {
		return errors.New("kubelet presented no certificate")
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}
