package telemetry

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Authority describes one CA authority for the expiry gauges. Type is
// AuthorityX509, AuthorityJWT or AuthorityUpstream (the upstream root, when
// an UpstreamAuthority is configured); Status is AuthorityActive,
// AuthorityPrepared or AuthorityOld. TTL is the authority's full lifetime
// (NotAfter - NotBefore); zero leaves out its ttl series.
type Authority struct {
	Type      string
	Status    string
	ExpiresAt time.Time
	TTL       time.Duration
}

// ServerSources are the values the server metrics read at scrape time. Each
// func must be safe for concurrent use and quick (it runs on every scrape:
// read an in-memory count, not a full table scan). A nil func leaves its
// metric out.
type ServerSources struct {
	// Entries returns the number of registration entries (spire_server_entries).
	Entries func() int
	// Agents returns the number of attested agents (spire_server_agents).
	Agents func() int
	// PushSubscribers returns the number of agents connected to the change
	// push stream (spire_server_push_subscribers).
	PushSubscribers func() int
	// Authorities returns the CA's authorities
	// (spire_server_ca_authority_expiry_timestamp_seconds, ..._ttl_seconds).
	Authorities func() []Authority
}

// ServerMetrics is the server's metric set:
//
//	spire_server_entries                                   gauge
//	spire_server_agents                                    gauge
//	spire_server_push_subscribers                          gauge
//	spire_server_node_attestations_total{attestor,result}  counter
//	spire_server_svids_issued_total{type="x509|jwt"}       counter
//	spire_server_ca_authority_expiry_timestamp_seconds{type,status}  gauge
//	spire_server_ca_authority_ttl_seconds{type,status}               gauge
//	spire_server_datastore_operation_duration_seconds{op}  histogram
//	spire_server_api_calls_total{service,method,code}      counter
//	spire_server_api_call_duration_seconds{service,method} histogram (unary calls)
//
// Its methods are safe for concurrent use and do nothing on a nil
// *ServerMetrics, so domain code may hold a nil one in tests.
type ServerMetrics struct {
	attestations *prometheus.CounterVec
	svidsIssued  *prometheus.CounterVec
	datastore    *prometheus.HistogramVec
	api          *rpcMetrics
}

// NewServerMetrics creates the server metrics and registers them on reg
// (never the default registry). It fails if a name is already registered.
func NewServerMetrics(reg prometheus.Registerer, src ServerSources) (*ServerMetrics, error) {
	if reg == nil {
		return nil, errors.New("telemetry: nil registerer")
	}
	m := &ServerMetrics{
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spire_server_node_attestations_total",
			Help: "Node attestations handled by the server, by attestor and result (success or failure).",
		}, []string{"attestor", "result"}),
		svidsIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spire_server_svids_issued_total",
			Help: "SVIDs signed by the server CA, by type (x509 or jwt).",
		}, []string{"type"}),
		datastore: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spire_server_datastore_operation_duration_seconds",
			Help:    "Latency of datastore operations, by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		api: &rpcMetrics{
			calls: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "spire_server_api_calls_total",
				Help: "gRPC calls served by the server APIs, by service, method and status code.",
			}, []string{"service", "method", "code"}),
			duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "spire_server_api_call_duration_seconds",
				Help:    "Latency of unary gRPC calls served by the server APIs, by service and method.",
				Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			}, []string{"service", "method"}),
			withSvc: true,
		},
	}
	cs := []prometheus.Collector{m.attestations, m.svidsIssued, m.datastore, m.api.calls, m.api.duration}
	for _, g := range []struct {
		name, help string
		fn         func() int
	}{
		{"spire_server_entries", "Registration entries in the datastore.", src.Entries},
		{"spire_server_agents", "Attested agents in the datastore.", src.Agents},
		{"spire_server_push_subscribers", "Agents connected to the server's change push stream.", src.PushSubscribers},
	} {
		if g.fn != nil {
			cs = append(cs, intGauge(g.name, g.help, g.fn))
		}
	}
	if src.Authorities != nil {
		cs = append(cs, newAuthorityCollector(src.Authorities))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry: register server metrics: %w", err)
		}
	}
	return m, nil
}

func intGauge(name, help string, fn func() int) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
		func() float64 { return float64(fn()) })
}

// NodeAttestation counts one node attestation handled by the server:
// result success when err is nil, failure otherwise. attestor is the
// attestation data type; names unknown to SPIRE count as "other".
func (m *ServerMetrics) NodeAttestation(attestor string, err error) {
	if m == nil {
		return
	}
	result := ResultSuccess
	if err != nil {
		result = ResultFailure
	}
	m.attestations.WithLabelValues(boundAttestor(attestor), result).Inc()
}

// SVIDsIssued counts n SVIDs signed, of type SVIDTypeX509 or SVIDTypeJWT
// (a batch of CSRs counts once with its size).
func (m *ServerMetrics) SVIDsIssued(svidType string, n int) {
	if m == nil || n <= 0 {
		return
	}
	if svidType != SVIDTypeX509 && svidType != SVIDTypeJWT {
		svidType = Other
	}
	m.svidsIssued.WithLabelValues(svidType).Add(float64(n))
}

// ObserveDatastoreOp records the latency of one datastore operation. op is
// the snake_case name of the datastore.Store method ("create_entry",
// "list_changes", ...); other names count as "other".
func (m *ServerMetrics) ObserveDatastoreOp(op string, d time.Duration) {
	if m == nil {
		return
	}
	m.datastore.WithLabelValues(boundDatastoreOp(op)).Observe(d.Seconds())
}

// UnaryServerInterceptor returns an interceptor that counts every unary call
// in spire_server_api_calls_total and times it. On a nil *ServerMetrics it
// only calls the handler.
func (m *ServerMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	if m == nil {
		return (*rpcMetrics)(nil).unary()
	}
	return m.api.unary()
}

// StreamServerInterceptor returns an interceptor that counts every stream
// when it ends, with its final code, in spire_server_api_calls_total.
func (m *ServerMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	if m == nil {
		return (*rpcMetrics)(nil).stream()
	}
	return m.api.stream()
}

// authorityCollector exports the CA authorities' expiry and lifetime, read
// from a func at scrape time.
type authorityCollector struct {
	fn     func() []Authority
	expiry *prometheus.Desc
	ttl    *prometheus.Desc
}

func newAuthorityCollector(fn func() []Authority) *authorityCollector {
	labels := []string{"type", "status"}
	return &authorityCollector{
		fn: fn,
		expiry: prometheus.NewDesc("spire_server_ca_authority_expiry_timestamp_seconds",
			"Unix time at which a CA authority expires, by type (x509, jwt, upstream) and status (active, prepared, old).",
			labels, nil),
		ttl: prometheus.NewDesc("spire_server_ca_authority_ttl_seconds",
			"Full lifetime of a CA authority in seconds, by type and status.",
			labels, nil),
	}
}

func (c *authorityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.ttl
}

func (c *authorityCollector) Collect(ch chan<- prometheus.Metric) {
	seen := make(map[[2]string]bool)
	for _, a := range c.fn() {
		key := [2]string{boundAuthorityType(a.Type), boundAuthorityStatus(a.Status)}
		if seen[key] || a.ExpiresAt.IsZero() {
			continue // one series per (type, status): the first wins
		}
		seen[key] = true
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue,
			float64(a.ExpiresAt.Unix()), key[0], key[1])
		if a.TTL > 0 {
			ch <- prometheus.MustNewConstMetric(c.ttl, prometheus.GaugeValue,
				a.TTL.Seconds(), key[0], key[1])
		}
	}
}
