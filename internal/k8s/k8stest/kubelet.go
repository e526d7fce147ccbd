package k8stest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Kubelet is a fake kubelet serving GET /pods on HTTPS with a certificate
// for "localhost" and 127.0.0.1 signed by its CA, for clients that present
// its bearer token.
type Kubelet struct {
	srv   *httptest.Server
	ca    *CA
	token string

	mu       sync.Mutex
	pods     []byte
	requests int
	onPods   func(n int) []byte
}

// NewKubelet starts a fake kubelet serving an empty pod list; it stops at
// the end of the test.
func NewKubelet(tb testing.TB) *Kubelet {
	tb.Helper()
	k := &Kubelet{ca: NewCA(tb), token: randomHex(tb, 16), pods: PodList()}
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(k.serve))
	k.srv.TLS = k.ca.ServerTLS(tb, "localhost")
	k.srv.StartTLS()
	tb.Cleanup(k.srv.Close)
	return k
}

// Port is the kubelet's TCP port on 127.0.0.1.
func (k *Kubelet) Port() int {
	_, p, _ := net.SplitHostPort(k.srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

// CA is the authority that signed the kubelet's certificate.
func (k *Kubelet) CA() *CA { return k.ca }

// Close stops the kubelet.
func (k *Kubelet) Close() { k.srv.Close() }

// WriteToken writes the token the kubelet accepts to dir/token and returns
// the path.
func (k *Kubelet) WriteToken(tb testing.TB, dir string) string {
	tb.Helper()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte(k.token+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// SetPods sets the PodList JSON that /pods returns.
func (k *Kubelet) SetPods(podListJSON []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pods = podListJSON
}

// OnPods makes each /pods answer the PodList JSON f returns for the
// request's number (1, 2, ...); nil from f means the list SetPods set. f
// runs under the kubelet's lock and must not call the kubelet. Tests use it
// to make a pod appear after a few polls.
func (k *Kubelet) OnPods(f func(n int) []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.onPods = f
}

// Requests counts the /pods requests so far.
func (k *Kubelet) Requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

func (k *Kubelet) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+k.token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("Unauthorized"))
		return
	}
	if r.Method != http.MethodGet || r.URL.Path != "/pods" {
		http.NotFound(w, r)
		return
	}
	k.mu.Lock()
	k.requests++
	body := k.pods
	if k.onPods != nil {
		if b := k.onPods(k.requests); b != nil {
			body = b
		}
	}
	k.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}
