package workload

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SVIDFunc returns the service's current X509-SVID, or false while it has
// none.
type SVIDFunc func() (*x509svid.SVID, bool)

// svidExpiry exports spiffe_x509_svid_expiration_seconds{spiffe_id} for the
// service's current X509-SVID, computed at scrape time.
type svidExpiry struct {
	svid  SVIDFunc
	clock func() time.Time
	desc  *prometheus.Desc
}

// NewSVIDExpiry returns a collector of spiffe_x509_svid_expiration_seconds:
// the seconds until the service's X509-SVID expires (the runbook alerts
// below 3600), labelled with its SPIFFE ID, read from svid at every scrape.
// While svid reports none, there is no sample. clock nil means time.Now.
func NewSVIDExpiry(svid SVIDFunc, clock func() time.Time) prometheus.Collector {
	if clock == nil {
		clock = time.Now
	}
	return &svidExpiry{
		svid:  svid,
		clock: clock,
		desc: prometheus.NewDesc("spiffe_x509_svid_expiration_seconds",
			"Seconds until the service's X509-SVID expires.", []string{"spiffe_id"}, nil),
	}
}

func (c *svidExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *svidExpiry) Collect(ch chan<- prometheus.Metric) {
	svid, ok := c.svid()
	if !ok || svid == nil || len(svid.Certificates) == 0 {
		return
	}
	left := svid.Certificates[0].NotAfter.Sub(c.clock()).Seconds()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, left, svid.ID.String())
}

// SourceSVID adapts an x509svid.Source that may not exist yet: get returns
// the source once there is one, nil before.
func SourceSVID(get func() x509svid.Source) SVIDFunc {
	return func() (*x509svid.SVID, bool) {
		src := get()
		if src == nil {
			return nil, false
		}
		svid, err := src.GetX509SVID()
		return svid, err == nil
	}
}
