package spiffegrpc

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts authentication attempts and failures under the names of the
// Neural Hive runbook:
//
//	grpc_auth_attempts_total{status="success|failure", method}   X509-SVID (mTLS)
//	grpc_auth_failures_total{reason, method}
//	grpc_jwt_auth_attempts_total{status="success|failure", method} JWT-SVID
//	grpc_jwt_auth_failures_total{reason, method}
//
// Every call that reaches an interceptor is one attempt, so
// failures/attempts is the failure rate the runbook alerts on (> 5%).
// method is the full gRPC method name; reason is a Reason. It is safe for
// concurrent use and may be shared by several MTLSAuth and JWTAuth values.
type Metrics struct {
	attempts    *prometheus.CounterVec
	failures    *prometheus.CounterVec
	jwtAttempts *prometheus.CounterVec
	jwtFailures *prometheus.CounterVec
}

// NewMetrics creates the four counters and registers them on reg, never on
// the default registry. Calling it twice with the same registry returns
// counters that share the registered series.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("spiffegrpc: nil prometheus registerer")
	}
	var err error
	m := &Metrics{}
	if m.attempts, err = counterVec(reg, "grpc_auth_attempts_total", "gRPC X509-SVID (mTLS) authentication attempts by outcome.", "status"); err != nil {
		return nil, err
	}
	if m.failures, err = counterVec(reg, "grpc_auth_failures_total", "gRPC X509-SVID (mTLS) authentication failures by reason.", "reason"); err != nil {
		return nil, err
	}
	if m.jwtAttempts, err = counterVec(reg, "grpc_jwt_auth_attempts_total", "gRPC JWT-SVID authentication attempts by outcome.", "status"); err != nil {
		return nil, err
	}
	if m.jwtFailures, err = counterVec(reg, "grpc_jwt_auth_failures_total", "gRPC JWT-SVID authentication failures by reason.", "reason"); err != nil {
		return nil, err
	}
	return m, nil
}

func counterVec(reg prometheus.Registerer, name, help, label string) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label, "method"})
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("spiffegrpc: register %s: %w", name, err)
	}
	return c, nil
}

type authKind int

const (
	kindX509 authKind = iota
	kindJWT
)

func (k authKind) String() string {
	if k == kindJWT {
		return "jwt-svid"
	}
	return "x509-svid"
}

func (m *Metrics) record(kind authKind, method string, reason Reason) {
	if m == nil {
		return
	}
	attempts, failures := m.attempts, m.failures
	if kind == kindJWT {
		attempts, failures = m.jwtAttempts, m.jwtFailures
	}
	if reason == "" {
		attempts.WithLabelValues("success", method).Inc()
		return
	}
	attempts.WithLabelValues("failure", method).Inc()
	failures.WithLabelValues(string(reason), method).Inc()
}
