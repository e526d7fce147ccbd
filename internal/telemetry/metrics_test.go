package telemetry_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// fakeClock is a settable clock for the scrape-time gauges.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var t0 = time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)

func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labelsOf(m *dto.Metric) map[string]string {
	out := make(map[string]string)
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// value returns the value of the sample of family name whose labels include
// want, and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		got := labelsOf(m)
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := value(mfs, name, want)
	if !ok {
		t.Fatalf("no sample %s%v", name, want)
	}
	return v
}

func populatedServer(t *testing.T, reg *prometheus.Registry) *telemetry.ServerMetrics {
	t.Helper()
	m, err := telemetry.NewServerMetrics(reg, telemetry.ServerSources{
		Entries:         func() int { return 37 },
		Agents:          func() int { return 5 },
		PushSubscribers: func() int { return 4 },
		Authorities: func() []telemetry.Authority {
			return []telemetry.Authority{
				{Type: telemetry.AuthorityX509, Status: telemetry.AuthorityActive, ExpiresAt: t0.Add(20 * time.Hour), TTL: 24 * time.Hour},
				{Type: telemetry.AuthorityX509, Status: telemetry.AuthorityPrepared, ExpiresAt: t0.Add(44 * time.Hour), TTL: 24 * time.Hour},
				{Type: telemetry.AuthorityJWT, Status: telemetry.AuthorityActive, ExpiresAt: t0.Add(20 * time.Hour)},
			}
		},
	})
	if err != nil {
		t.Fatalf("NewServerMetrics: %v", err)
	}
	return m
}

func TestServerMetrics(t *testing.T) {
	reg := telemetry.NewRegistry()
	m := populatedServer(t, reg)
	m.NodeAttestation("join_token", nil)
	m.NodeAttestation("join_token", errors.New("bad token"))
	m.NodeAttestation("join_token", errors.New("bad token"))
	m.NodeAttestation("evil-${jndi}", nil)
	m.SVIDsIssued(telemetry.SVIDTypeX509, 3)
	m.SVIDsIssued(telemetry.SVIDTypeJWT, 1)
	m.SVIDsIssued("x509", 0)
	m.SVIDsIssued("pgp", 1)
	m.ObserveDatastoreOp("create_entry", 2*time.Millisecond)
	m.ObserveDatastoreOp("DROP TABLE", time.Millisecond)

	mfs := gather(t, reg)
	for _, tt := range []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"ok/entries", "spire_server_entries", nil, 37},
		{"ok/agents", "spire_server_agents", nil, 5},
		{"ok/push_subscribers", "spire_server_push_subscribers", nil, 4},
		{"ok/attestation_success", "spire_server_node_attestations_total", map[string]string{"attestor": "join_token", "result": "success"}, 1},
		{"ok/attestation_failure", "spire_server_node_attestations_total", map[string]string{"attestor": "join_token", "result": "failure"}, 2},
		{"ok/unknown_attestor_bounded", "spire_server_node_attestations_total", map[string]string{"attestor": "other", "result": "success"}, 1},
		{"ok/svids_x509", "spire_server_svids_issued_total", map[string]string{"type": "x509"}, 3},
		{"ok/svids_jwt", "spire_server_svids_issued_total", map[string]string{"type": "jwt"}, 1},
		{"ok/svids_other", "spire_server_svids_issued_total", map[string]string{"type": "other"}, 1},
		{"ok/datastore_op", "spire_server_datastore_operation_duration_seconds", map[string]string{"op": "create_entry"}, 1},
		{"ok/datastore_op_bounded", "spire_server_datastore_operation_duration_seconds", map[string]string{"op": "other"}, 1},
		{"ok/x509_active_expiry", "spire_server_ca_authority_expiry_timestamp_seconds", map[string]string{"type": "x509", "status": "active"}, float64(t0.Add(20 * time.Hour).Unix())},
		{"ok/x509_prepared_expiry", "spire_server_ca_authority_expiry_timestamp_seconds", map[string]string{"type": "x509", "status": "prepared"}, float64(t0.Add(44 * time.Hour).Unix())},
		{"ok/jwt_active_expiry", "spire_server_ca_authority_expiry_timestamp_seconds", map[string]string{"type": "jwt", "status": "active"}, float64(t0.Add(20 * time.Hour).Unix())},
		{"ok/x509_active_ttl", "spire_server_ca_authority_ttl_seconds", map[string]string{"type": "x509", "status": "active"}, 86400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustValue(t, mfs, tt.metric, tt.labels); got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
	if _, ok := value(mfs, "spire_server_ca_authority_ttl_seconds", map[string]string{"type": "jwt"}); ok {
		t.Error("jwt authority without TTL exported a ttl series")
	}
	if _, ok := value(mfs, "spire_server_datastore_operation_duration_seconds", map[string]string{"op": "DROP TABLE"}); ok {
		t.Error("unknown datastore op exported as a label value")
	}
}

func TestServerMetricsNilSources(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := telemetry.NewServerMetrics(reg, telemetry.ServerSources{})
	if err != nil {
		t.Fatal(err)
	}
	m.SVIDsIssued(telemetry.SVIDTypeX509, 1)
	mfs := gather(t, reg)
	for _, name := range []string{"spire_server_entries", "spire_server_agents", "spire_server_push_subscribers", "spire_server_ca_authority_expiry_timestamp_seconds"} {
		if _, ok := mfs[name]; ok {
			t.Errorf("%s exported without a source", name)
		}
	}
}

func TestRegisterTwiceFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		new  func(prometheus.Registerer) error
	}{
		{"fail/server", func(r prometheus.Registerer) error {
			_, err := telemetry.NewServerMetrics(r, telemetry.ServerSources{})
			return err
		}},
		{"fail/agent", func(r prometheus.Registerer) error {
			_, err := telemetry.NewAgentMetrics(r, telemetry.AgentSources{})
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			if err := tt.new(reg); err != nil {
				t.Fatal(err)
			}
			err := tt.new(reg)
			if err == nil || !strings.Contains(err.Error(), "telemetry: register") {
				t.Fatalf("second registration: err = %v, want a telemetry: register error", err)
			}
		})
	}
	if _, err := telemetry.NewServerMetrics(nil, telemetry.ServerSources{}); err == nil {
		t.Error("NewServerMetrics(nil) succeeded")
	}
	if _, err := telemetry.NewAgentMetrics(nil, telemetry.AgentSources{}); err == nil {
		t.Error("NewAgentMetrics(nil) succeeded")
	}
}

func TestNilMetricsAreNoOps(t *testing.T) {
	var s *telemetry.ServerMetrics
	s.NodeAttestation("join_token", nil)
	s.SVIDsIssued(telemetry.SVIDTypeX509, 1)
	s.ObserveDatastoreOp("ping", time.Millisecond)
	if s.UnaryServerInterceptor() == nil || s.StreamServerInterceptor() == nil {
		t.Error("nil *ServerMetrics returned nil interceptors")
	}
	var a *telemetry.AgentMetrics
	a.NodeAttestationFailed("join_token", telemetry.ReasonRejected)
	a.WorkloadAttestationFailed("unix", telemetry.ReasonNoIdentity)
	a.SetAgentSVID(t0, t0.Add(time.Hour))
	a.RevisionAnnounced(3)
	a.SyncCompleted(3, t0)
	a.ObservePropagation(time.Millisecond)
	a.WorkloadAPIConnOpened()
	a.WorkloadAPIConnClosed()
	a.WorkloadAPICall("x509svid_http", "OK")
	if a.UnaryServerInterceptor() == nil || a.StreamServerInterceptor() == nil {
		t.Error("nil *AgentMetrics returned nil interceptors")
	}
}

func populatedAgent(t *testing.T, reg *prometheus.Registry, clock *fakeClock, svids func() []telemetry.SVID) *telemetry.AgentMetrics {
	t.Helper()
	m, err := telemetry.NewAgentMetrics(reg, telemetry.AgentSources{
		SVIDs:                 svids,
		CacheEntries:          func() int { return 12 },
		CacheSVIDs:            func() int { return 9 },
		BundleX509Authorities: func() int { return 2 },
		BundleJWTAuthorities:  func() int { return 1 },
		Clock:                 clock.Now,
	})
	if err != nil {
		t.Fatalf("NewAgentMetrics: %v", err)
	}
	return m
}

// TestSVIDExpirationAtScrapeTime checks that the seconds until expiry are
// computed when Prometheus scrapes, from the clock, not when the SVID was
// stored: the same SVID shows less time left on a later scrape.
func TestSVIDExpirationAtScrapeTime(t *testing.T) {
	clock := &fakeClock{now: t0}
	const id = "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"
	svid := telemetry.SVID{SPIFFEID: id, NotBefore: t0.Add(-10 * time.Second), NotAfter: t0.Add(time.Hour - 10*time.Second)}
	reg := prometheus.NewRegistry()
	populatedAgent(t, reg, clock, func() []telemetry.SVID { return []telemetry.SVID{svid} })
	sel := map[string]string{"spiffe_id": id}

	for _, tt := range []struct {
		name    string
		advance time.Duration
		want    float64
	}{
		{"ok/fresh", 0, 3590},
		{"ok/past_half_life", 31 * time.Minute, 3590 - 31*60},
		{"ok/expired_is_negative", 40 * time.Minute, 3590 - 71*60},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock.Add(tt.advance)
			mfs := gather(t, reg)
			if got := mustValue(t, mfs, "spiffe_x509_svid_expiration_seconds", sel); got != tt.want {
				t.Errorf("expiration_seconds = %v, want %v", got, tt.want)
			}
			if got := mustValue(t, mfs, "spiffe_x509_svid_ttl_seconds", sel); got != 3600 {
				t.Errorf("ttl_seconds = %v, want 3600", got)
			}
			if got, want := mustValue(t, mfs, "spiffe_x509_svid_expiry_timestamp_seconds", sel), float64(svid.NotAfter.Unix()); got != want {
				t.Errorf("expiry_timestamp_seconds = %v, want %v", got, want)
			}
		})
	}
}

// TestSVIDDuplicateIDKeepsFirstExpiring: two entries with the same SPIFFE
// ID give two SVIDs; the series shows the one that expires first, so a
// stale SVID is not masked by a fresh one, and the registry never sees a
// duplicate series.
func TestSVIDDuplicateIDKeepsFirstExpiring(t *testing.T) {
	clock := &fakeClock{now: t0}
	const id = "spiffe://neural-hive.local/ns/a/sa/b"
	reg := prometheus.NewRegistry()
	populatedAgent(t, reg, clock, func() []telemetry.SVID {
		return []telemetry.SVID{
			{SPIFFEID: id, NotBefore: t0, NotAfter: t0.Add(time.Hour)},
			{SPIFFEID: id, NotBefore: t0.Add(-50 * time.Minute), NotAfter: t0.Add(10 * time.Minute)},
			{SPIFFEID: "spiffe://neural-hive.local/other", NotBefore: t0, NotAfter: t0.Add(2 * time.Hour)},
			{SPIFFEID: "", NotAfter: t0.Add(time.Hour)},
		}
	})
	mfs := gather(t, reg)
	if n := len(mfs["spiffe_x509_svid_expiration_seconds"].GetMetric()); n != 2 {
		t.Fatalf("%d expiration series, want 2", n)
	}
	if got := mustValue(t, mfs, "spiffe_x509_svid_expiration_seconds", map[string]string{"spiffe_id": id}); got != 600 {
		t.Errorf("expiration_seconds = %v, want 600 (the SVID expiring first)", got)
	}
}

func TestAgentMetrics(t *testing.T) {
	clock := &fakeClock{now: t0}
	reg := telemetry.NewRegistry()
	m := populatedAgent(t, reg, clock, func() []telemetry.SVID { return nil })
	m.NodeAttestationFailed("join_token", telemetry.ReasonFromError(status.Error(codes.PermissionDenied, "failed to attest: join token does not exist or has already been used")))
	m.NodeAttestationFailed("join_token", telemetry.ReasonFromError(status.Error(codes.Unavailable, "connection refused")))
	m.NodeAttestationFailed("x509pop", telemetry.ReasonFromError(errors.New("open /etc/agent.crt: no such file")))
	m.NodeAttestationFailed("x509pop", "because I said so")
	m.WorkloadAttestationFailed("unix", telemetry.ReasonNoIdentity)
	m.SetAgentSVID(t0, t0.Add(time.Hour))
	m.RevisionAnnounced(10)
	m.SyncCompleted(7, t0)
	m.RevisionAnnounced(9) // older than the latest announcement: ignored
	m.ObservePropagation(40 * time.Millisecond)
	m.WorkloadAPIConnOpened()
	m.WorkloadAPIConnOpened()
	m.WorkloadAPIConnClosed()
	m.WorkloadAPICall("x509svid_http", "OK")

	mfs := gather(t, reg)
	errs := "spire_agent_attestation_errors_total"
	for _, tt := range []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"ok/node_rejected", errs, map[string]string{"type": "node", "attestor": "join_token", "reason": "rejected"}, 1},
		{"ok/node_unavailable", errs, map[string]string{"type": "node", "attestor": "join_token", "reason": "unavailable"}, 1},
		{"ok/node_local", errs, map[string]string{"type": "node", "attestor": "x509pop", "reason": "local"}, 1},
		{"ok/node_reason_bounded", errs, map[string]string{"type": "node", "attestor": "x509pop", "reason": "other"}, 1},
		{"ok/workload_no_identity", errs, map[string]string{"type": "workload", "attestor": "unix", "reason": "no_identity"}, 1},
		{"ok/agent_svid_expiry", "spire_agent_svid_expiry_timestamp_seconds", nil, float64(t0.Add(time.Hour).Unix())},
		{"ok/agent_svid_ttl", "spire_agent_svid_ttl_seconds", nil, 3600},
		{"ok/sync_revision", "spire_agent_sync_revision", nil, 7},
		{"ok/sync_lag", "spire_agent_sync_lag_revisions", nil, 3},
		{"ok/sync_last_success", "spire_agent_sync_last_success_timestamp_seconds", nil, float64(t0.Unix())},
		{"ok/propagation", "spire_agent_entry_propagation_seconds", nil, 1},
		{"ok/connections", "spire_agent_workload_api_connections", nil, 1},
		{"ok/http_call", "spire_agent_workload_api_calls_total", map[string]string{"method": "x509svid_http", "code": "OK"}, 1},
		{"ok/cache_entries", "spire_agent_cache_entries", nil, 12},
		{"ok/cache_svids", "spire_agent_cache_svids", nil, 9},
		{"ok/bundle_x509", "spire_agent_bundle_x509_authorities", nil, 2},
		{"ok/bundle_jwt", "spire_agent_bundle_jwt_authorities", nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustValue(t, mfs, tt.metric, tt.labels); got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
	m.SyncCompleted(10, t0.Add(time.Second))
	if got := mustValue(t, gather(t, reg), "spire_agent_sync_lag_revisions", nil); got != 0 {
		t.Errorf("lag after catching up = %v, want 0", got)
	}
}

func TestReasonFromError(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"ok/permission_denied", status.Error(codes.PermissionDenied, "x"), telemetry.ReasonRejected},
		{"ok/invalid_argument", status.Error(codes.InvalidArgument, "x"), telemetry.ReasonRejected},
		{"ok/wrapped_status", errorsJoin("attest", status.Error(codes.Unauthenticated, "x")), telemetry.ReasonRejected},
		{"ok/unavailable", status.Error(codes.Unavailable, "x"), telemetry.ReasonUnavailable},
		{"ok/deadline_code", status.Error(codes.DeadlineExceeded, "x"), telemetry.ReasonTimeout},
		{"ok/deadline_ctx", contextDeadline(), telemetry.ReasonTimeout},
		{"ok/canceled", status.Error(codes.Canceled, "x"), telemetry.ReasonCanceled},
		{"ok/internal", status.Error(codes.Internal, "x"), telemetry.ReasonInternal},
		{"ok/local", errors.New("open key: permission denied"), telemetry.ReasonLocal},
		{"ok/nil", nil, telemetry.Other},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := telemetry.ReasonFromError(tt.err); got != tt.want {
				t.Errorf("ReasonFromError(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

// TestMetricNamesLint runs the lint promtool check metrics applies (the
// same promlint package) over both metric sets, populated.
func TestMetricNamesLint(t *testing.T) {
	clock := &fakeClock{now: t0}
	reg := prometheus.NewRegistry()
	s := populatedServer(t, reg)
	a := populatedAgent(t, reg, clock, func() []telemetry.SVID {
		return []telemetry.SVID{{SPIFFEID: "spiffe://neural-hive.local/w", NotBefore: t0, NotAfter: t0.Add(time.Hour)}}
	})
	s.NodeAttestation("join_token", nil)
	s.SVIDsIssued(telemetry.SVIDTypeX509, 1)
	s.ObserveDatastoreOp("ping", time.Millisecond)
	a.NodeAttestationFailed("join_token", telemetry.ReasonRejected)
	a.WorkloadAPICall("x509svid_http", "OK")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestLabelsPresentOnEverySample checks STYLE O4: every sample of a family
// carries the same label names, none empty.
func TestLabelsPresentOnEverySample(t *testing.T) {
	clock := &fakeClock{now: t0}
	reg := prometheus.NewRegistry()
	s := populatedServer(t, reg)
	a := populatedAgent(t, reg, clock, func() []telemetry.SVID {
		return []telemetry.SVID{{SPIFFEID: "spiffe://neural-hive.local/w", NotBefore: t0, NotAfter: t0.Add(time.Hour)}}
	})
	s.NodeAttestation("", errors.New("x"))
	a.NodeAttestationFailed("", "")
	a.WorkloadAttestationFailed("unix", telemetry.ReasonPeer)
	for name, mf := range gather(t, reg) {
		var want []string
		for i, m := range mf.GetMetric() {
			var names []string
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == "" {
					t.Errorf("%s: empty value for label %s", name, lp.GetName())
				}
				names = append(names, lp.GetName())
			}
			if i == 0 {
				want = names
			} else if strings.Join(names, ",") != strings.Join(want, ",") {
				t.Errorf("%s: labels %v, want %v", name, names, want)
			}
		}
	}
}
