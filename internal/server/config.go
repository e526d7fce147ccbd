package server

import (
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Config is the typed runtime configuration of a server, built by the CLI
// from server.conf and the run flags. New fills defaults for zero values.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// BindAddress is the TCP endpoint agents connect to (default 0.0.0.0:8081).
	BindAddress *net.TCPAddr
	// SocketPath is the admin API unix socket (default /tmp/spire-server/private/api.sock).
	SocketPath string
	DataDir    string
	Logger     *slog.Logger
	// LogLevel, when set, is the level the logger was built with; logger get/set uses it.
	LogLevel *slog.LevelVar

	CATTL       time.Duration // default 24h
	CAKeyType   string        // "ec-p256" (default), "ec-p384", "rsa-2048", "rsa-4096"
	CASubject   pkix.Name     // default C=US, O=SPIFFE
	X509SVIDTTL time.Duration // default 1h
	JWTSVIDTTL  time.Duration // default 5m
	JWTKeyType  string        // default same family as CAKeyType ("ec-p256")
	JWTIssuer   string
	AdminIDs    []spiffeid.ID

	DataStore         DataStoreConfig
	KeyManager        KeyManagerConfig
	UpstreamAuthority *UpstreamDiskConfig // nil: self-signed
	// NodeAttestors lists the configured node attestor names ("join_token", "x509pop", "k8s_psat")
	// with their plugin_data decoded by the config package.
	NodeAttestors map[string]map[string]any

	HealthChecks HealthChecksConfig
	Telemetry    TelemetryConfig
	// Registry receives the server's metrics. Nil: a new
	// telemetry.NewRegistry(). It is served on the telemetry block's
	// Prometheus listener when that is enabled.
	Registry *prometheus.Registry

	// Clock, when set, replaces time.Now (tests).
	Clock func() time.Time
}

// DataStoreConfig selects the SQL dialect.
type DataStoreConfig struct {
	DatabaseType     string // "sqlite3" or "postgres"
	ConnectionString string
}

// KeyManagerConfig selects where CA keys live.
type KeyManagerConfig struct {
	Kind     string // "disk" or "memory"
	KeysPath string // disk only
}

// UpstreamDiskConfig is the UpstreamAuthority "disk" plugin.
type UpstreamDiskConfig struct {
	CertFilePath   string
	KeyFilePath    string
	BundleFilePath string
}

// HealthChecksConfig is the health_checks block. With ListenerEnabled the
// server serves LivePath and ReadyPath on BindAddress:BindPort; the checks
// behind them also answer the gRPC health service on the admin socket.
type HealthChecksConfig struct {
	ListenerEnabled bool
	BindAddress     string // default localhost
	BindPort        int    // 0 picks a free port; the config package fills SPIRE's 80
	LivePath        string // default /live
	ReadyPath       string // default /ready
}

// TelemetryConfig is the telemetry block (Prometheus only). With
// PrometheusEnabled the server serves its registry on
// PrometheusHost:PrometheusPort (default host localhost; port 0 picks one).
type TelemetryConfig struct {
	PrometheusEnabled bool
	PrometheusHost    string
	PrometheusPort    int
}
