package spiffegrpc_test

import (
	"strings"
	"testing"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewMetrics(t *testing.T) {
	t.Run("fail/nil-registerer", func(t *testing.T) {
		if _, err := spiffegrpc.NewMetrics(nil); err == nil {
			t.Fatal("nil registerer accepted")
		}
	})
	t.Run("ok/twice-on-one-registry-shares-series", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := spiffegrpc.NewMetrics(reg); err != nil {
			t.Fatal(err)
		}
		if _, err := spiffegrpc.NewMetrics(reg); err != nil {
			t.Fatalf("second NewMetrics: %v", err)
		}
	})
	t.Run("fail/name-taken-by-another-type", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "grpc_auth_attempts_total", Help: "x"}))
		if _, err := spiffegrpc.NewMetrics(reg); err == nil || !strings.Contains(err.Error(), "grpc_auth_attempts_total") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ok/lint", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := spiffegrpc.NewMetrics(reg); err != nil {
			t.Fatal(err)
		}
		problems, err := testutil.GatherAndLint(reg)
		if err != nil || len(problems) > 0 {
			t.Fatalf("lint: %v %v", problems, err)
		}
	})
}
