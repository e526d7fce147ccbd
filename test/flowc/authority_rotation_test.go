package flowc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// authority reads `spire-server localauthority <kind> show -output json`.
func (s *server) authority(tb testing.TB, kind string) (active, prepared, old string) {
	tb.Helper()
	var a struct {
		Active, Prepared, Old *struct {
			AuthorityID string `json:"authority_id"`
		}
	}
	out := s.mustCLI(tb, "localauthority", kind, "show", "-output", "json")
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		tb.Fatalf("localauthority %s show: %q: %v", kind, out, err)
	}
	id := func(p *struct {
		AuthorityID string `json:"authority_id"`
	}) string {
		if p == nil {
			return ""
		}
		return p.AuthorityID
	}
	return id(a.Active), id(a.Prepared), id(a.Old)
}

// jwtKeyID fetches a JWT-SVID for the orchestrator and returns the key ID
// in its header: the JWT authority that signed it.
func jwtKeyID(tb testing.TB, src *workload.Sources) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svid, err := src.JWT.FetchJWTSVID(ctx, jwtsvid.Params{Audience: orchID})
	if err != nil {
		tb.Fatal(err)
	}
	header, _, _ := strings.Cut(svid.Marshal(), ".")
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		tb.Fatal(err)
	}
	var h struct {
		KeyID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		tb.Fatal(err)
	}
	return h.KeyID
}

// The runbook's X.509 then JWT authority rotation (prepare, wait for the
// bundle to reach the workloads, activate, taint, wait, revoke) while Flow C
// tasks run without a pause: not one task may fail, and each one's result
// must be right. The services recycle connections every 3s, so new mTLS and
// TLS handshakes happen at every stage of the rotation; JWT-SVIDs live 20s
// so that the ones signed by the old JWT key are gone before it is revoked.
func TestFlowC_AuthorityRotationUnderTraffic(t *testing.T) {
	ttl := []string{"-x509SVIDTTL", "3600", "-jwtSVIDTTL", "20"}
	p := newPlane(t, planeOptions{ttl: ttl, serviceArgs: []string{"-maxConnectionAge", "3s"}})
	client := p.submitter(t, ttl...)

	// This test's own Workload API view (the submitter's identity): the
	// agent's X.509 and JWT bundles, and an SVID to see who signs.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := workload.Open(ctx, workload.Config{Addr: "unix://" + p.agent.socket, ID: spiffeid.RequireFromString(submitterID), JWT: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	x509Roots := func() int {
		b, err := src.X509.GetX509BundleForTrustDomain(td)
		if err != nil {
			return 0
		}
		return len(b.X509Authorities())
	}
	jwtKeys := func() int {
		b, err := src.JWT.GetJWTBundleForTrustDomain(td)
		if err != nil {
			return 0
		}
		return len(b.JWTAuthorities())
	}
	issuedBy := func() string {
		svid, err := src.X509.GetX509SVID()
		if err != nil {
			return ""
		}
		return hex.EncodeToString(svid.Certificates[0].AuthorityKeyId)
	}
	services := []*service{p.registry, p.orchestrator, p.worker}
	svidLeft := func() []float64 {
		left := make([]float64, len(services))
		for i, s := range services {
			left[i] = counter(t, s.metrics(t), "spiffe_x509_svid_expiration_seconds", nil)
		}
		return left
	}

	// Traffic: one task after another until stop (bounded: 5 minutes).
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		deadline := time.Now().Add(5 * time.Minute)
		for i := 0; time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			payload := fmt.Sprintf("authority rotation task %d", i)
			sum := sha256.Sum256([]byte(payload))
			callCtx, callCancel := context.WithTimeout(context.Background(), 10*time.Second)
			res, err := client.Submit(callCtx, &flow.SubmitRequest{Capability: "sha256", Payload: []byte(payload)})
			callCancel()
			switch {
			case err != nil:
			case res.Output != hex.EncodeToString(sum[:]) || res.Submitter != submitterID || res.Worker.SPIFFEID != workerID:
				err = fmt.Errorf("wrong result %+v", res)
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("task %d at %s: %v", i, time.Now().Format(time.StampMilli), err))
				continue
			}
			ok.Add(1)
		}
	})
	stopTraffic := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopTraffic()
	stage := func(name string) { t.Logf("%s: %d tasks ok, %d failed", name, ok.Load(), failed.Load()) }
	waitFor(t, "first tasks", func() bool { return ok.Load()+failed.Load() >= 20 })
	stage("steady traffic")

	// X.509: prepare, then wait for the new root in the bundle.
	oldX, _, _ := p.srv.authority(t, "x509")
	if issuedBy() != oldX {
		t.Fatalf("SVID issued by %s, not by the active authority %s", issuedBy(), oldX)
	}
	p.srv.mustCLI(t, "localauthority", "x509", "prepare")
	_, nextX, _ := p.srv.authority(t, "x509")
	waitFor(t, "the prepared X.509 root in the bundle", func() bool { return x509Roots() == 2 })
	time.Sleep(time.Second) // every service's source has had it pushed too
	stage("x509 prepared")
	// Activate, taint the old one: the agent re-signs every SVID at once.
	before := svidLeft()
	p.srv.mustCLI(t, "localauthority", "x509", "activate", "-authorityID", nextX)
	p.srv.mustCLI(t, "localauthority", "x509", "taint", "-authorityID", oldX)
	waitFor(t, "every SVID re-issued by the new X.509 authority", func() bool {
		if issuedBy() != nextX {
			return false
		}
		for i, left := range svidLeft() {
			if left <= before[i] {
				return false
			}
		}
		return true
	})
	stage("x509 activated and old tainted, SVIDs re-issued")
	time.Sleep(4 * time.Second) // connections made with the old SVIDs recycled
	p.srv.mustCLI(t, "localauthority", "x509", "revoke", "-authorityID", oldX)
	waitFor(t, "the revoked X.509 root out of the bundle", func() bool { return x509Roots() == 1 })
	time.Sleep(4 * time.Second) // new handshakes on the final bundle
	stage("x509 old revoked")

	// JWT: prepare, wait for the new key in the JWT bundle.
	oldJ, _, _ := p.srv.authority(t, "jwt")
	if kid := jwtKeyID(t, src); kid != oldJ {
		t.Fatalf("JWT-SVID signed by key %q, not by the active authority %s", kid, oldJ)
	}
	p.srv.mustCLI(t, "localauthority", "jwt", "prepare")
	_, nextJ, _ := p.srv.authority(t, "jwt")
	if nextJ == "" || nextJ == oldJ {
		t.Fatalf("jwt prepare: prepared %q, active %q", nextJ, oldJ)
	}
	waitFor(t, "the prepared JWT key in the bundle", func() bool { return jwtKeys() == 2 })
	time.Sleep(time.Second)
	stage("jwt prepared")
	p.srv.mustCLI(t, "localauthority", "jwt", "activate", "-authorityID", nextJ)
	p.srv.mustCLI(t, "localauthority", "jwt", "taint", "-authorityID", oldJ)
	stage("jwt activated and old tainted")
	// JWT-SVIDs signed by the old key (20s TTL, cached by the client until
	// half life) are gone after the TTL.
	time.Sleep(25 * time.Second)
	if kid := jwtKeyID(t, src); kid != nextJ {
		t.Fatalf("JWT-SVID signed by key %q after the TTL, want the new authority %s", kid, nextJ)
	}
	p.srv.mustCLI(t, "localauthority", "jwt", "revoke", "-authorityID", oldJ)
	waitFor(t, "the revoked JWT key out of the bundle", func() bool { return jwtKeys() == 1 })
	time.Sleep(4 * time.Second)
	stage("jwt old revoked")

	stopTraffic()
	if active, _, _ := p.srv.authority(t, "x509"); active != nextX {
		t.Errorf("active X.509 authority %s, want %s", active, nextX)
	}
	if active, _, _ := p.srv.authority(t, "jwt"); active != nextJ {
		t.Errorf("active JWT authority %s, want %s", active, nextJ)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d tasks failed during the authority rotation; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	if n := ok.Load(); n < 200 {
		t.Fatalf("only %d tasks ran during the authority rotation", n)
	}
	for _, s := range services {
		m := s.metrics(t)
		if f := counter(t, m, "grpc_auth_failures_total", nil) + counter(t, m, "grpc_jwt_auth_failures_total", nil); f != 0 {
			t.Errorf("%s: %v auth failures", s.name, f)
		}
	}
	t.Logf("%d Flow C tasks during the X.509 and JWT authority rotations, 0 failed", ok.Load())
}
