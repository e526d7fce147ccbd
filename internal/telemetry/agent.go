package telemetry

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// SVID describes one X509-SVID the agent holds, for the expiry gauges.
type SVID struct {
	SPIFFEID  string
	NotBefore time.Time
	NotAfter  time.Time
}

// AgentSources are the values the agent metrics read at scrape time. Each
// func must be safe for concurrent use and quick. A nil func leaves its
// metric out.
type AgentSources struct {
	// SVIDs returns the workload X509-SVIDs the agent's cache holds
	// (spiffe_x509_svid_* by spiffe_id).
	SVIDs func() []SVID
	// CacheEntries returns the number of registration entries in the cache
	// (spire_agent_cache_entries).
	CacheEntries func() int
	// CacheSVIDs returns the number of X509-SVIDs in the cache
	// (spire_agent_cache_svids).
	CacheSVIDs func() int
	// BundleX509Authorities and BundleJWTAuthorities return the number of
	// X.509 roots and JWT keys in the bundle of the agent's own trust domain
	// (spire_agent_bundle_x509_authorities, spire_agent_bundle_jwt_authorities):
	// during a CA rotation, every agent shows 2 once the prepared authority
	// has reached it.
	BundleX509Authorities func() int
	BundleJWTAuthorities  func() int
	// Clock is the time the SVID gauges count from. Nil: time.Now.
	Clock func() time.Time
}

// AgentMetrics is the agent's metric set. The first three use the names of
// the Neural Hive runbook and its alerts:
//
//	spiffe_x509_svid_expiration_seconds{spiffe_id}         gauge, seconds until NotAfter, at scrape time
//	spiffe_x509_svid_expiry_timestamp_seconds{spiffe_id}   gauge, NotAfter as Unix time
//	spiffe_x509_svid_ttl_seconds{spiffe_id}                gauge, NotAfter - NotBefore
//	spire_agent_attestation_errors_total{type="node|workload",attestor,reason}  counter
//	spire_agent_svid_expiry_timestamp_seconds              gauge, the agent's own SVID
//	spire_agent_svid_ttl_seconds                           gauge, the agent's own SVID
//	spire_agent_sync_revision                              gauge, last revision applied
//	spire_agent_sync_lag_revisions                         gauge, announced - applied
//	spire_agent_sync_last_success_timestamp_seconds        gauge
//	spire_agent_entry_propagation_seconds                  histogram, entry change to workload update
//	spire_agent_workload_api_connections                   gauge
//	spire_agent_workload_api_calls_total{method,code}      counter
//	spire_agent_cache_entries, spire_agent_cache_svids     gauges
//	spire_agent_bundle_x509_authorities, spire_agent_bundle_jwt_authorities  gauges
//
// A spiffe_id held by several SVIDs (entries with the same ID and different
// selectors) is exported once, for the SVID that expires first, so an SVID
// that was not renewed is never hidden by a fresh one.
//
// Its methods are safe for concurrent use and do nothing on a nil
// *AgentMetrics, so domain code may hold a nil one in tests.
type AgentMetrics struct {
	attestationErrors *prometheus.CounterVec
	agentSVIDExpiry   prometheus.Gauge
	agentSVIDTTL      prometheus.Gauge
	syncRevision      prometheus.Gauge
	syncLastSuccess   prometheus.Gauge
	propagation       prometheus.Histogram
	connections       prometheus.Gauge
	workloadAPI       *rpcMetrics

	applied   atomic.Int64
	announced atomic.Int64
}

// NewAgentMetrics creates the agent metrics and registers them on reg
// (never the default registry). It fails if a name is already registered.
func NewAgentMetrics(reg prometheus.Registerer, src AgentSources) (*AgentMetrics, error) {
	if reg == nil {
		return nil, errors.New("telemetry: nil registerer")
	}
	m := &AgentMetrics{
		attestationErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spire_agent_attestation_errors_total",
			Help: "Failed attestations: node (the agent to the server) and workload (a Workload API caller), by attestor and reason.",
		}, []string{"type", "attestor", "reason"}),
		agentSVIDExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spire_agent_svid_expiry_timestamp_seconds",
			Help: "Unix time at which the agent's own SVID expires.",
		}),
		agentSVIDTTL: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spire_agent_svid_ttl_seconds",
			Help: "Full lifetime in seconds of the agent's own SVID.",
		}),
		syncRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spire_agent_sync_revision",
			Help: "Revision of the authorized entries the agent last applied.",
		}),
		syncLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spire_agent_sync_last_success_timestamp_seconds",
			Help: "Unix time of the agent's last successful sync with the server.",
		}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spire_agent_entry_propagation_seconds",
			Help:    "Time from an entry change on the server to the update sent to the affected workloads.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spire_agent_workload_api_connections",
			Help: "Open connections on the Workload API socket.",
		}),
		workloadAPI: &rpcMetrics{
			calls: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "spire_agent_workload_api_calls_total",
				Help: "Workload API calls, by method and status code.",
			}, []string{"method", "code"}),
		},
	}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "spire_agent_sync_lag_revisions",
		Help: "Revisions announced by the server that the agent has not applied yet.",
	}, func() float64 {
		if d := m.announced.Load() - m.applied.Load(); d > 0 {
			return float64(d)
		}
		return 0
	})
	cs := []prometheus.Collector{m.attestationErrors, m.agentSVIDExpiry, m.agentSVIDTTL,
		m.syncRevision, m.syncLastSuccess, lag, m.propagation, m.connections, m.workloadAPI.calls}
	if src.CacheEntries != nil {
		cs = append(cs, intGauge("spire_agent_cache_entries", "Registration entries in the agent's cache.", src.CacheEntries))
	}
	if src.CacheSVIDs != nil {
		cs = append(cs, intGauge("spire_agent_cache_svids", "X509-SVIDs in the agent's cache.", src.CacheSVIDs))
	}
	if src.BundleX509Authorities != nil {
		cs = append(cs, intGauge("spire_agent_bundle_x509_authorities", "X.509 authorities (roots) in the bundle of the agent's trust domain.", src.BundleX509Authorities))
	}
	if src.BundleJWTAuthorities != nil {
		cs = append(cs, intGauge("spire_agent_bundle_jwt_authorities", "JWT authorities (signing keys) in the bundle of the agent's trust domain.", src.BundleJWTAuthorities))
	}
	if src.SVIDs != nil {
		cs = append(cs, newSVIDCollector(src.SVIDs, src.Clock))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry: register agent metrics: %w", err)
		}
	}
	return m, nil
}

// NodeAttestationFailed counts one failed node attestation attempt of the
// agent. attestor is the node attestor ("join_token", "x509pop", ...);
// reason is a Reason constant, see ReasonFromError. Values outside the fixed
// sets count as "other".
func (m *AgentMetrics) NodeAttestationFailed(attestor, reason string) {
	if m == nil {
		return
	}
	m.attestationErrors.WithLabelValues(AttestationNode, boundAttestor(attestor), boundReason(reason)).Inc()
}

// WorkloadAttestationFailed counts one Workload API caller that the agent
// could not attest or that no entry matched. attestor is the workload
// attestor ("unix", "k8s") or "other" when none applies; reason is
// ReasonNoIdentity, ReasonPeer or ReasonLocal.
func (m *AgentMetrics) WorkloadAttestationFailed(attestor, reason string) {
	if m == nil {
		return
	}
	m.attestationErrors.WithLabelValues(AttestationWorkload, boundAttestor(attestor), boundReason(reason)).Inc()
}

// SetAgentSVID records the validity of the agent's own SVID (after
// attestation, renewal or reattestation).
func (m *AgentMetrics) SetAgentSVID(notBefore, notAfter time.Time) {
	if m == nil {
		return
	}
	m.agentSVIDExpiry.Set(float64(notAfter.Unix()))
	m.agentSVIDTTL.Set(notAfter.Sub(notBefore).Seconds())
}

// RevisionAnnounced records a revision the server announced (push) or
// reported; spire_agent_sync_lag_revisions counts how far the agent is
// behind it.
func (m *AgentMetrics) RevisionAnnounced(revision int64) {
	if m == nil {
		return
	}
	for {
		cur := m.announced.Load()
		if revision <= cur || m.announced.CompareAndSwap(cur, revision) {
			return
		}
	}
}

// SyncCompleted records a successful sync that applied revision at time at.
func (m *AgentMetrics) SyncCompleted(revision int64, at time.Time) {
	if m == nil {
		return
	}
	m.applied.Store(revision)
	m.RevisionAnnounced(revision)
	m.syncRevision.Set(float64(revision))
	m.syncLastSuccess.Set(float64(at.UnixMilli()) / 1000)
}

// ObservePropagation records the time from an entry change on the server to
// the Workload API update that carried it to a workload.
func (m *AgentMetrics) ObservePropagation(d time.Duration) {
	if m == nil {
		return
	}
	m.propagation.Observe(d.Seconds())
}

// WorkloadAPIConnOpened counts a connection accepted on the Workload API
// socket; call WorkloadAPIConnClosed when it closes.
func (m *AgentMetrics) WorkloadAPIConnOpened() {
	if m == nil {
		return
	}
	m.connections.Inc()
}

// WorkloadAPIConnClosed counts a Workload API connection closed.
func (m *AgentMetrics) WorkloadAPIConnClosed() {
	if m == nil {
		return
	}
	m.connections.Dec()
}

// WorkloadAPICall counts one Workload API call outside gRPC (the HTTP/1.1
// JSON endpoint). method is a constant of the caller ("x509svid_http");
// code is a gRPC code name ("OK", "PermissionDenied").
func (m *AgentMetrics) WorkloadAPICall(method, code string) {
	if m == nil {
		return
	}
	m.workloadAPI.calls.WithLabelValues(method, code).Inc()
}

// UnaryServerInterceptor returns an interceptor counting Workload API unary
// calls by method and code. On a nil *AgentMetrics it only calls the handler.
func (m *AgentMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	if m == nil {
		return (*rpcMetrics)(nil).unary()
	}
	return m.workloadAPI.unary()
}

// StreamServerInterceptor returns an interceptor counting Workload API
// streams, when they end, by method and final code.
func (m *AgentMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	if m == nil {
		return (*rpcMetrics)(nil).stream()
	}
	return m.workloadAPI.stream()
}

// svidCollector computes the SVID gauges at scrape time from the SVIDs the
// agent holds, so the seconds until expiry are exact whenever Prometheus
// asks, without a ticker.
type svidCollector struct {
	svids      func() []SVID
	now        func() time.Time
	expiration *prometheus.Desc
	expiry     *prometheus.Desc
	ttl        *prometheus.Desc
}

func newSVIDCollector(svids func() []SVID, clock func() time.Time) *svidCollector {
	if clock == nil {
		clock = time.Now
	}
	labels := []string{"spiffe_id"}
	return &svidCollector{
		svids: svids,
		now:   clock,
		expiration: prometheus.NewDesc("spiffe_x509_svid_expiration_seconds",
			"Seconds until the X509-SVID expires (negative once expired), computed at scrape time.", labels, nil),
		expiry: prometheus.NewDesc("spiffe_x509_svid_expiry_timestamp_seconds",
			"Unix time at which the X509-SVID expires.", labels, nil),
		ttl: prometheus.NewDesc("spiffe_x509_svid_ttl_seconds",
			"Full lifetime of the X509-SVID in seconds (NotAfter - NotBefore); the agent renews it at half of this.", labels, nil),
	}
}

func (c *svidCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiration
	ch <- c.expiry
	ch <- c.ttl
}

func (c *svidCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	first := make(map[string]SVID)
	var order []string
	for _, s := range c.svids() {
		if s.SPIFFEID == "" || s.NotAfter.IsZero() {
			continue
		}
		prev, ok := first[s.SPIFFEID]
		if !ok {
			order = append(order, s.SPIFFEID)
		}
		if !ok || s.NotAfter.Before(prev.NotAfter) {
			first[s.SPIFFEID] = s
		}
	}
	for _, id := range order {
		s := first[id]
		ch <- prometheus.MustNewConstMetric(c.expiration, prometheus.GaugeValue, s.NotAfter.Sub(now).Seconds(), id)
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(s.NotAfter.UnixMilli())/1000, id)
		ch <- prometheus.MustNewConstMetric(c.ttl, prometheus.GaugeValue, s.NotAfter.Sub(s.NotBefore).Seconds(), id)
	}
}
