package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// HealthChecksBlock is the health_checks block, shared by server and agent.
type HealthChecksBlock struct {
	ListenerEnabled bool   `hcl:"listener_enabled"`
	BindAddress     string `hcl:"bind_address"`
	BindPort        string `hcl:"bind_port"` // a string in SPIRE; a number is accepted too
	ReadyPath       string `hcl:"ready_path"`
	LivePath        string `hcl:"live_path"`
}

// HealthChecks is the typed health_checks block with SPIRE's defaults filled.
type HealthChecks struct {
	ListenerEnabled bool   // default false: no HTTP health listener
	BindAddress     string // default "localhost"
	BindPort        int    // default 80
	LivePath        string // default "/live"
	ReadyPath       string // default "/ready"
}

// TelemetryBlock is the telemetry block. Only the Prometheus sink is
// implemented; the other SPIRE sinks are recognised and refused.
type TelemetryBlock struct {
	Prometheus *PrometheusBlock `hcl:"Prometheus"`
	DogStatsd  []AddressBlock   `hcl:"DogStatsd"`
	Statsd     []AddressBlock   `hcl:"Statsd"`
	M3         []M3Block        `hcl:"M3"`
	InMem      *InMemBlock      `hcl:"InMem"`

	MetricPrefix           string   `hcl:"MetricPrefix"`
	EnableTrustDomainLabel *bool    `hcl:"EnableTrustDomainLabel"`
	EnableHostnameLabel    *bool    `hcl:"EnableHostnameLabel"`
	AllowedPrefixes        []string `hcl:"AllowedPrefixes"`
	BlockedPrefixes        []string `hcl:"BlockedPrefixes"`
	AllowedLabels          []string `hcl:"AllowedLabels"`
	BlockedLabels          []string `hcl:"BlockedLabels"`
}

// PrometheusBlock is telemetry { Prometheus { host port } }.
type PrometheusBlock struct {
	Host string `hcl:"host"`
	Port int    `hcl:"port"`
}

// AddressBlock is a DogStatsd or Statsd sink.
type AddressBlock struct {
	Address string `hcl:"address"`
}

// M3Block is an M3 sink.
type M3Block struct {
	Address string `hcl:"address"`
	Env     string `hcl:"env"`
}

// InMemBlock is the InMem sink (SPIRE runs it by default; it has no keys).
type InMemBlock struct{}

// Telemetry is the typed telemetry block.
type Telemetry struct {
	// PrometheusEnabled is true when a Prometheus block is present.
	PrometheusEnabled bool
	PrometheusHost    string // default "localhost"
	PrometheusPort    int
	// MetricPrefix replaces the default spire_server / spire_agent prefix when set.
	MetricPrefix           string
	EnableHostnameLabel    bool // default true
	EnableTrustDomainLabel bool // default false
}

func (c *checker) healthChecks(b HealthChecksBlock) HealthChecks {
	h := HealthChecks{
		ListenerEnabled: b.ListenerEnabled,
		BindAddress:     "localhost",
		BindPort:        80,
		LivePath:        "/live",
		ReadyPath:       "/ready",
	}
	if b.BindAddress != "" {
		h.BindAddress = strings.Trim(b.BindAddress, "[]")
	}
	if b.BindPort != "" {
		port, err := strconv.Atoi(b.BindPort)
		if err != nil || port < 0 || port > 65535 {
			c.add("health_checks.bind_port", "health_checks bind_port %q is not a valid port", b.BindPort)
		} else {
			h.BindPort = port
		}
	}
	for _, p := range []struct {
		key, value string
		dst        *string
	}{
		{"live_path", b.LivePath, &h.LivePath},
		{"ready_path", b.ReadyPath, &h.ReadyPath},
	} {
		if p.value == "" {
			continue
		}
		if !strings.HasPrefix(p.value, "/") {
			c.add("health_checks."+p.key, "health_checks %s %q must start with /", p.key, p.value)
			continue
		}
		*p.dst = p.value
	}
	if h.ListenerEnabled && h.LivePath == h.ReadyPath {
		c.add("health_checks.ready_path", "health_checks live_path and ready_path must differ (both are %q)", h.LivePath)
	}
	return h
}

func (c *checker) telemetry(b TelemetryBlock) Telemetry {
	t := Telemetry{
		MetricPrefix:        b.MetricPrefix,
		EnableHostnameLabel: true,
	}
	if b.EnableHostnameLabel != nil {
		t.EnableHostnameLabel = *b.EnableHostnameLabel
	}
	if b.EnableTrustDomainLabel != nil {
		t.EnableTrustDomainLabel = *b.EnableTrustDomainLabel
	}
	if p := b.Prometheus; p != nil {
		t.PrometheusEnabled = true
		t.PrometheusHost = p.Host
		if t.PrometheusHost == "" {
			t.PrometheusHost = "localhost"
		}
		t.PrometheusPort = p.Port
		switch {
		case !c.d.has("telemetry.Prometheus.port"):
			c.add("telemetry.Prometheus", "telemetry Prometheus port must be configured")
		case p.Port < 0 || p.Port > 65535:
			c.add("telemetry.Prometheus.port", "telemetry Prometheus port %d is not a valid port", p.Port)
		}
	}
	for _, sink := range []struct {
		name string
		n    int
	}{{"DogStatsd", len(b.DogStatsd)}, {"Statsd", len(b.Statsd)}, {"M3", len(b.M3)}} {
		if sink.n > 0 {
			c.add("telemetry."+sink.name, "telemetry sink %s is not supported: only Prometheus is", sink.name)
		}
	}
	for _, key := range []string{"AllowedPrefixes", "BlockedPrefixes", "AllowedLabels", "BlockedLabels"} {
		if c.d.has("telemetry." + key) {
			c.warn("telemetry %s is not supported and is ignored", key)
		}
	}
	return t
}

// featureFlags checks experimental.feature_flags as SPIRE loads them, before
// anything else: its only flag is a test flag.
func (c *checker) featureFlags(path string, flags []string) {
	var bad []string
	for _, fl := range flags {
		if fl != "i_am_a_test_flag" {
			bad = append(bad, fl)
		}
	}
	if len(bad) > 0 {
		c.add(path, "error loading feature flags: unknown feature flag(s): %v", bad)
	}
}

// trustDomain parses the trust_domain at path; SPIRE warns about names
// longer than the SPIFFE limit without refusing them.
func (c *checker) trustDomain(path, value string) spiffeid.TrustDomain {
	td, err := spiffeid.TrustDomainFromString(value)
	if err != nil {
		c.add(path, "could not parse trust_domain %q: %v", value, err)
		return spiffeid.TrustDomain{}
	}
	if len(td.Name()) > 255 {
		c.warn("Configured trust domain name should be less than 255 characters to be SPIFFE compliant; a longer trust domain name may impact interoperability")
	}
	return td
}

// duration parses a SPIRE duration ("1h", "24h", "5m"). what names the value
// in SPIRE's message: `could not parse <what> "x": time: invalid duration "x"`.
func (c *checker) duration(path, what, value string) time.Duration {
	v, err := time.ParseDuration(value)
	if err != nil {
		c.add(path, "could not parse %s %q: %v", what, value, err)
		return 0
	}
	if v < 0 {
		c.add(path, "%s %q must not be negative", lastKey(path), value)
		return 0
	}
	return v
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// keyType normalizes a CA/JWT key type; the error is SPIRE's.
func keyType(s string) (string, error) {
	switch k := strings.ToLower(s); k {
	case "rsa-2048", "rsa-4096", "ec-p256", "ec-p384":
		return k, nil
	}
	return "", fmt.Errorf("key type %q is unknown; must be one of [rsa-2048, rsa-4096, ec-p256, ec-p384]", s)
}

// maxUnixSocketPath is the longest socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL).
const maxUnixSocketPath = 107

// socketPath makes a socket path absolute, as SPIRE does, and checks that a
// unix socket can be bound there.
func (c *checker) socketPath(path, key, value string) string {
	abs, err := filepath.Abs(value)
	if err != nil {
		c.add(path, "failed to get absolute path for %s: %v", key, err)
		return value
	}
	switch {
	case strings.HasSuffix(value, "/"):
		c.add(path, "%s %q names a directory; it must name the socket file", key, value)
	case len(abs) > maxUnixSocketPath:
		c.add(path, "%s %q is too long: a unix socket path is limited to %d bytes, and its absolute form %q has %d",
			key, value, maxUnixSocketPath, abs, len(abs))
	}
	return abs
}
