package config

import (
	"crypto/x509/pkix"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/template/parse"
	"time"

	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Server defaults, as SPIRE 1.13 applies them.
const (
	DefaultServerConfigPath = "conf/server/server.conf"
	DefaultServerSocketPath = "/tmp/spire-server/private/api.sock"
	DefaultServerBindAddr   = "0.0.0.0"
	DefaultServerBindPort   = 8081
	DefaultCATTL            = 24 * time.Hour
	DefaultX509SVIDTTL      = time.Hour
	DefaultJWTSVIDTTL       = 5 * time.Minute
	DefaultKeyType          = "ec-p256"
)

// ServerFile is server.conf as written: the blocks SPIRE 1.13 reads.
// LoadServer fills it; Override applies command-line flags; Check checks it.
type ServerFile struct {
	Server       *ServerBlock      `hcl:"server"`
	Plugins      ast.Node          `hcl:"plugins"`
	Telemetry    TelemetryBlock    `hcl:"telemetry"`
	HealthChecks HealthChecksBlock `hcl:"health_checks"`

	source
}

// ServerBlock is the server block, with every key SPIRE 1.13 accepts.
type ServerBlock struct {
	AdminIDs                     []string                `hcl:"admin_ids"`
	AgentTTL                     string                  `hcl:"agent_ttl"`
	AuditLogEnabled              bool                    `hcl:"audit_log_enabled"`
	BindAddress                  string                  `hcl:"bind_address"`
	BindPort                     int                     `hcl:"bind_port"`
	CAKeyType                    string                  `hcl:"ca_key_type"`
	CASubject                    *CASubjectBlock         `hcl:"ca_subject"`
	CATTL                        string                  `hcl:"ca_ttl"`
	DataDir                      string                  `hcl:"data_dir"`
	DefaultX509SVIDTTL           string                  `hcl:"default_x509_svid_ttl"`
	DefaultJWTSVIDTTL            string                  `hcl:"default_jwt_svid_ttl"`
	Experimental                 ServerExperimentalBlock `hcl:"experimental"`
	Federation                   *FederationBlock        `hcl:"federation"`
	JWTIssuer                    string                  `hcl:"jwt_issuer"`
	JWTKeyType                   string                  `hcl:"jwt_key_type"`
	LogFile                      string                  `hcl:"log_file"`
	LogLevel                     string                  `hcl:"log_level"`
	LogFormat                    string                  `hcl:"log_format"`
	LogSourceLocation            bool                    `hcl:"log_source_location"`
	PruneAttestedNodesExpiredFor string                  `hcl:"prune_attested_nodes_expired_for"`
	PruneNonReattestableNodes    bool                    `hcl:"prune_tofu_nodes"`
	RateLimit                    RateLimitBlock          `hcl:"ratelimit"`
	SocketPath                   string                  `hcl:"socket_path"`
	TrustDomain                  string                  `hcl:"trust_domain"`
	MaxAttestedNodeInfoStaleness *string                 `hcl:"max_attested_node_info_staleness"`

	// Undocumented in SPIRE, accepted and ignored here.
	ProfilingEnabled bool     `hcl:"profiling_enabled"`
	ProfilingPort    int      `hcl:"profiling_port"`
	ProfilingFreq    int      `hcl:"profiling_freq"`
	ProfilingNames   []string `hcl:"profiling_names"`
}

// CASubjectBlock is server.ca_subject.
type CASubjectBlock struct {
	Country      []string `hcl:"country"`
	Organization []string `hcl:"organization"`
	CommonName   string   `hcl:"common_name"`
}

// RateLimitBlock is server.ratelimit.
type RateLimitBlock struct {
	Attestation *bool `hcl:"attestation"`
	Signing     *bool `hcl:"signing"`
}

// ServerExperimentalBlock is server.experimental.
type ServerExperimentalBlock struct {
	AuthOpaPolicyEngine     *OpaPolicyEngineBlock `hcl:"auth_opa_policy_engine"`
	CacheReloadInterval     string                `hcl:"cache_reload_interval"`
	FullCacheReloadInterval string                `hcl:"full_cache_reload_interval"`
	EventsBasedCache        bool                  `hcl:"events_based_cache"`
	PruneEventsOlderThan    string                `hcl:"prune_events_older_than"`
	EventTimeout            string                `hcl:"event_timeout"`
	SQLTransactionTimeout   string                `hcl:"sql_transaction_timeout"`
	RequirePQKEM            bool                  `hcl:"require_pq_kem"`
	FeatureFlags            []string              `hcl:"feature_flags"`
	NamedPipeName           string                `hcl:"named_pipe_name"`
}

// OpaPolicyEngineBlock is server.experimental.auth_opa_policy_engine.
type OpaPolicyEngineBlock struct {
	Local *struct {
		RegoPath       string `hcl:"rego_path"`
		PolicyDataPath string `hcl:"policy_data_path"`
	} `hcl:"local"`
}

// FederationBlock is server.federation.
type FederationBlock struct {
	BundleEndpoint *BundleEndpointBlock          `hcl:"bundle_endpoint"`
	FederatesWith  map[string]FederatesWithBlock `hcl:"federates_with"`
}

// BundleEndpointBlock is server.federation.bundle_endpoint.
type BundleEndpointBlock struct {
	Address     string     `hcl:"address"`
	Port        int        `hcl:"port"`
	RefreshHint string     `hcl:"refresh_hint"`
	ACME        *ACMEBlock `hcl:"acme"`
	Profile     ast.Node   `hcl:"profile"`
}

// ACMEBlock is server.federation.bundle_endpoint.acme.
type ACMEBlock struct {
	DirectoryURL string `hcl:"directory_url"`
	DomainName   string `hcl:"domain_name"`
	Email        string `hcl:"email"`
	ToSAccepted  bool   `hcl:"tos_accepted"`
}

// FederatesWithBlock is one server.federation.federates_with entry.
type FederatesWithBlock struct {
	BundleEndpointURL     string   `hcl:"bundle_endpoint_url"`
	BundleEndpointProfile ast.Node `hcl:"bundle_endpoint_profile"`
}

// Server is the typed, checked server configuration, defaults filled as
// SPIRE 1.13 fills them. The server CLI converts it into the server's
// runtime Config.
type Server struct {
	TrustDomain spiffeid.TrustDomain
	// BindAddress is the TCP endpoint for agents (default 0.0.0.0:8081).
	BindAddress *net.TCPAddr
	// SocketPath is the absolute path of the admin API socket
	// (default /tmp/spire-server/private/api.sock).
	SocketPath string
	DataDir    string
	Log        Log

	CATTL       time.Duration // default 24h
	CAKeyType   string        // default "ec-p256"
	CASubject   pkix.Name     // default C=US, O=SPIFFE
	X509SVIDTTL time.Duration // default 1h
	JWTSVIDTTL  time.Duration // default 5m
	// AgentTTL is the agent SVID lifetime; 0 means X509SVIDTTL.
	AgentTTL   time.Duration
	JWTKeyType string // default CAKeyType
	JWTIssuer  string
	AdminIDs   []spiffeid.ID

	RateLimitAttestation bool // default true
	RateLimitSigning     bool // default true
	// PruneAttestedNodesExpiredFor, when non-zero, prunes agents whose SVID
	// expired that long ago.
	PruneAttestedNodesExpiredFor time.Duration
	PruneNonReattestableNodes    bool

	// DataStore is the DataStore "sql" plugin; nil when none is declared
	// (validate accepts that, as SPIRE does; run refuses it).
	DataStore *DataStore
	// KeyManager is the KeyManager plugin; nil when none is declared.
	KeyManager *ServerKeyManager
	// UpstreamAuthority is the UpstreamAuthority "disk" plugin; nil: self-signed CA.
	UpstreamAuthority *UpstreamDisk
	// NodeAttestors are the enabled node attestors, in declaration order.
	NodeAttestors []ServerNodeAttestor

	HealthChecks HealthChecks
	Telemetry    Telemetry

	// Warnings are what SPIRE would log as warnings about this
	// configuration (TTLs the CA cannot honour, accepted-but-ignored keys);
	// the CLI logs them once its logger exists.
	Warnings []string
}

// DataStore is the DataStore "sql" plugin data.
type DataStore struct {
	DatabaseType     string // "sqlite3" or "postgres"
	ConnectionString string
}

// ServerKeyManager is the server's KeyManager plugin.
type ServerKeyManager struct {
	Kind     string // "disk" or "memory"
	KeysPath string // disk: the JSON file holding the keys
}

// UpstreamDisk is the UpstreamAuthority "disk" plugin data.
type UpstreamDisk struct {
	CertFilePath   string
	KeyFilePath    string
	BundleFilePath string // optional
}

// ServerNodeAttestor is one server NodeAttestor plugin.
type ServerNodeAttestor struct {
	Name    string         // "join_token", "x509pop" or "k8s_psat"
	X509PoP *ServerX509PoP // set when Name is "x509pop"
	K8sPSAT *ServerK8sPSAT // set when Name is "k8s_psat"
}

// ServerK8sPSAT is the server k8s_psat attestor's plugin_data.
type ServerK8sPSAT struct {
	// Clusters maps the cluster names agents send to their settings; none
	// means the attestor refuses every agent (SPIRE logs that it is
	// effectively disabled).
	Clusters map[string]K8sPSATCluster
}

// K8sPSATCluster is one entry of the k8s_psat clusters map.
type K8sPSATCluster struct {
	// ServiceAccountAllowList holds "namespace:name" of the service accounts
	// agents may run as; at least one is required.
	ServiceAccountAllowList []string
	// Audience is what tokens must be issued for; nil means SPIRE's default
	// ("spire-server"), an empty slice the API server's own audiences.
	Audience []string
	// KubeConfigFile reaches the API server; empty means in-cluster.
	KubeConfigFile       string
	AllowedNodeLabelKeys []string
	AllowedPodLabelKeys  []string
}

// ServerX509PoP is the server x509pop attestor's plugin_data.
type ServerX509PoP struct {
	// Mode is "external_pki" (default: agents present certificates chained to
	// CABundlePaths) or "spiffe" (agents present SVIDs of this trust domain).
	Mode string
	// CABundlePaths are ca_bundle_path or ca_bundle_paths.
	CABundlePaths []string
	// AgentPathTemplate is the agent ID path template; empty means the
	// default for Mode ("/{{ .PluginName }}/{{ .Fingerprint }}" for
	// external_pki, "/{{ .PluginName }}/{{ .SVIDPathTrimmed }}" for spiffe).
	AgentPathTemplate string
	// SPIFFEPrefix is the path prefix of agent SVIDs in spiffe mode
	// (default "/spire-exchange/").
	SPIFFEPrefix string
}

// LoadServer reads and decodes server.conf at path (DefaultServerConfigPath
// when empty). Its errors are SPIRE's: a missing file ("could not find config
// file ...: please use the -config flag"), or a syntax or type error
// ("unable to decode configuration at ...: At 4:5: ...").
func LoadServer(path string, opts LoadOptions) (*ServerFile, error) {
	f := &ServerFile{}
	return fileOrNil(f, readDocument(path, DefaultServerConfigPath, opts, f))
}

// ParseServer decodes server.conf text; name is the file name used in
// locations. It is LoadServer without the file system.
func ParseServer(name, data string) (*ServerFile, error) {
	f := &ServerFile{}
	return fileOrNil(f, decodeDocument(name, data, f))
}

// ServerOverrides are the run/validate flags that override server.conf;
// zero values leave the file's value.
type ServerOverrides struct {
	BindAddress       string // -bindAddress
	BindPort          int    // -serverPort
	SocketPath        string // -socketPath
	TrustDomain       string // -trustDomain
	DataDir           string // -dataDir
	LogFile           string // -logFile
	LogFormat         string // -logFormat
	LogLevel          string // -logLevel
	LogSourceLocation bool   // -logSourceLocation
}

// Override applies command-line flags over the file: a flag that is set
// wins over the file, which wins over the defaults (SPIRE's precedence).
func (f *ServerFile) Override(o ServerOverrides) {
	d := f.document()
	if f.Server == nil {
		f.Server = &ServerBlock{}
	}
	s := f.Server
	override(d, "server.bind_address", "-bindAddress", o.BindAddress, &s.BindAddress)
	override(d, "server.socket_path", "-socketPath", o.SocketPath, &s.SocketPath)
	override(d, "server.trust_domain", "-trustDomain", o.TrustDomain, &s.TrustDomain)
	override(d, "server.data_dir", "-dataDir", o.DataDir, &s.DataDir)
	override(d, "server.log_file", "-logFile", o.LogFile, &s.LogFile)
	override(d, "server.log_format", "-logFormat", o.LogFormat, &s.LogFormat)
	override(d, "server.log_level", "-logLevel", o.LogLevel, &s.LogLevel)
	override(d, "server.bind_port", "-serverPort", o.BindPort, &s.BindPort)
	override(d, "server.log_source_location", "-logSourceLocation", o.LogSourceLocation, &s.LogSourceLocation)
}

// Validate checks the file and returns every problem found (an *Error), or
// nil. It is Check without the result.
func (f *ServerFile) Validate() error {
	_, err := f.Check()
	return err
}

// Check checks the file and returns the typed configuration. On failure
// the error is an *Error listing every problem with its location, ordered as
// SPIRE checks them, so its first problem is the one SPIRE would report. A
// file without a DataStore or KeyManager plugin passes, as it passes SPIRE's
// validate; the server refuses to start without them.
func (f *ServerFile) Check() (*Server, error) {
	c := &checker{d: f.document()}
	b := f.Server
	if b == nil {
		b = &ServerBlock{}
	}
	out := &Server{}

	// Feature flags are loaded before anything else in SPIRE.
	c.featureFlags("server.experimental.feature_flags", b.Experimental.FeatureFlags)

	// SPIRE's validateConfig, with defaults merged in.
	bindAddress, bindPort := b.BindAddress, b.BindPort
	if bindAddress == "" && !f.doc.has("server.bind_address") {
		bindAddress = DefaultServerBindAddr
	}
	if bindPort == 0 && !f.doc.has("server.bind_port") {
		bindPort = DefaultServerBindPort
	}
	if bindAddress == "" || bindPort == 0 {
		loc := "server.bind_address"
		if bindAddress != "" {
			loc = "server.bind_port"
		}
		c.add(loc, "bind_address and bind_port must be configured")
	}
	if b.TrustDomain == "" {
		c.add("server", "trust_domain must be configured")
	}
	if b.DataDir == "" {
		c.add("server", "data_dir must be configured")
	}
	if f.Plugins == nil {
		c.addAt(Location{File: f.doc.path}, "plugins section must be configured")
	}
	if fed := b.Federation; fed != nil {
		if be := fed.BundleEndpoint; be != nil && be.ACME != nil {
			if be.ACME.DomainName == "" {
				c.add("server.federation.bundle_endpoint.acme", "federation.bundle_endpoint.acme.domain_name must be configured")
			}
			if be.ACME.Email == "" {
				c.add("server.federation.bundle_endpoint.acme", "federation.bundle_endpoint.acme.email must be configured")
			}
		}
		for _, td := range sortedKeys(fed.FederatesWith) {
			cfg := fed.FederatesWith[td]
			path := "server.federation.federates_with." + td
			switch {
			case cfg.BundleEndpointURL == "":
				c.add(path, "federation.federates_with[%q].bundle_endpoint_url must be configured", td)
			case !strings.HasPrefix(strings.ToLower(cfg.BundleEndpointURL), "https://"):
				c.add(path+".bundle_endpoint_url", "federation.federates_with[%q].bundle_endpoint_url must use the HTTPS protocol; URL found: %q", td, cfg.BundleEndpointURL)
			}
		}
	}
	if b.Experimental.EventTimeout != "" && b.Experimental.SQLTransactionTimeout != "" {
		c.add("server.experimental.sql_transaction_timeout", "both experimental sql_transaction_timeout and event_timeout set, only set event_timeout")
	}
	if b.Experimental.NamedPipeName != "" {
		c.add("server.experimental.named_pipe_name", "invalid configuration: named_pipe_name is not supported in this platform; please use socket_path instead")
	}

	// Logger.
	out.Log = c.log("server", b.LogLevel, b.LogFormat, b.LogFile, b.LogSourceLocation)

	// Bind address and admin socket.
	if bindAddress != "" && bindPort != 0 {
		addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(strings.Trim(bindAddress, "[]"), strconv.Itoa(bindPort)))
		if err != nil {
			c.add("server.bind_address", "could not resolve bind address \"%s:%d\": %v", bindAddress, bindPort, err)
		} else {
			out.BindAddress = addr
		}
	}
	out.SocketPath = c.socketPath("server.socket_path", "socket_path", orDefault(b.SocketPath, DefaultServerSocketPath))
	out.DataDir = b.DataDir

	// Trust domain.
	if b.TrustDomain != "" {
		out.TrustDomain = c.trustDomain("server.trust_domain", b.TrustDomain)
	}

	if fed := b.Federation; fed != nil {
		c.federation(fed)
	}
	if b.MaxAttestedNodeInfoStaleness != nil {
		if _, err := time.ParseDuration(*b.MaxAttestedNodeInfoStaleness); err != nil {
			c.add("server.max_attested_node_info_staleness", "could not parse max attested node staleness %q: %v", *b.MaxAttestedNodeInfoStaleness, err)
		}
		c.warn("max_attested_node_info_staleness is not supported and is ignored")
	}
	for _, s := range b.AdminIDs {
		id, err := spiffeid.FromString(s)
		if err != nil {
			c.add("server.admin_ids", "could not parse admin ID %q: %v", s, err)
			continue
		}
		out.AdminIDs = append(out.AdminIDs, id)
	}

	// TTLs.
	if b.AgentTTL != "" {
		out.AgentTTL = c.duration("server.agent_ttl", "agent ttl", b.AgentTTL)
	}
	out.X509SVIDTTL = DefaultX509SVIDTTL
	if b.DefaultX509SVIDTTL != "" {
		out.X509SVIDTTL = c.duration("server.default_x509_svid_ttl", "default X509 SVID ttl", b.DefaultX509SVIDTTL)
	}
	out.JWTSVIDTTL = DefaultJWTSVIDTTL
	if b.DefaultJWTSVIDTTL != "" {
		out.JWTSVIDTTL = c.duration("server.default_jwt_svid_ttl", "default JWT SVID ttl", b.DefaultJWTSVIDTTL)
	}
	out.CATTL = DefaultCATTL
	if b.CATTL != "" {
		out.CATTL = c.duration("server.ca_ttl", "default CA ttl", b.CATTL)
	}
	for _, w := range ttlWarnings(out.CATTL, out.X509SVIDTTL, out.JWTSVIDTTL, out.AgentTTL) {
		c.warn("%s", w)
	}

	// Key types and CA subject.
	out.CAKeyType = DefaultKeyType
	if b.CAKeyType != "" {
		kt, err := keyType(b.CAKeyType)
		if err != nil {
			c.add("server.ca_key_type", "error parsing ca_key_type: %v", err)
		} else {
			out.CAKeyType = kt
		}
	}
	out.JWTKeyType = out.CAKeyType
	if b.JWTKeyType != "" {
		kt, err := keyType(b.JWTKeyType)
		if err != nil {
			c.add("server.jwt_key_type", "error parsing jwt_key_type: %v", err)
		} else {
			out.JWTKeyType = kt
		}
	}
	out.JWTIssuer = b.JWTIssuer
	if s := b.CASubject; s != nil {
		out.CASubject = pkix.Name{Country: s.Country, Organization: s.Organization, CommonName: s.CommonName}
		if len(s.Country) == 0 && len(s.Organization) == 0 && s.CommonName == "" {
			c.warn("ca_subject configurable is set but empty; the default will be used")
		}
	}
	if len(out.CASubject.Country) == 0 && len(out.CASubject.Organization) == 0 && out.CASubject.CommonName == "" {
		out.CASubject = pkix.Name{Country: []string{"US"}, Organization: []string{"SPIFFE"}}
	}

	// Plugins (SPIRE parses the block here; the plugin checks come last).
	plugins := c.plugins(f.Plugins)

	if b.PruneAttestedNodesExpiredFor != "" {
		v, err := time.ParseDuration(b.PruneAttestedNodesExpiredFor)
		if err != nil {
			c.add("server.prune_attested_nodes_expired_for", "could not parse prune_attested_nodes_expired_for: %v", err)
		}
		out.PruneAttestedNodesExpiredFor = v
		out.PruneNonReattestableNodes = b.PruneNonReattestableNodes
	}

	// Unknown keys: SPIRE reports them together, after the values above.
	c.problems = append(c.problems, f.doc.unknown...)

	c.experimental(b.Experimental)

	out.RateLimitAttestation, out.RateLimitSigning = true, true
	if b.RateLimit.Attestation != nil {
		out.RateLimitAttestation = *b.RateLimit.Attestation
	}
	if b.RateLimit.Signing != nil {
		out.RateLimitSigning = *b.RateLimit.Signing
	}
	if b.AuditLogEnabled {
		c.warn("audit_log_enabled is not supported and is ignored")
	}
	if b.ProfilingEnabled {
		c.warn("profiling_enabled is not supported and is ignored")
	}

	// Beyond SPIRE's validate: plugins, health checks and telemetry.
	for _, p := range plugins {
		c.serverPlugin(p, out)
	}
	out.HealthChecks = c.healthChecks(f.HealthChecks)
	out.Telemetry = c.telemetry(f.Telemetry)

	out.Warnings = c.warnings
	if err := c.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *checker) federation(fed *FederationBlock) {
	if be := fed.BundleEndpoint; be != nil {
		if be.RefreshHint != "" {
			if _, err := time.ParseDuration(be.RefreshHint); err != nil {
				c.add("server.federation.bundle_endpoint.refresh_hint", "could not parse refresh_hint %q: %v", be.RefreshHint, err)
			}
		}
		if be.ACME != nil && be.Profile != nil {
			c.add("server.federation.bundle_endpoint", "either bundle endpoint 'acme' or 'profile' can be set, but not both")
		}
	}
	for _, td := range sortedKeys(fed.FederatesWith) {
		if _, err := spiffeid.TrustDomainFromString(td); err != nil {
			c.add("server.federation.federates_with."+td, "%v", err)
			continue
		}
		if fed.FederatesWith[td].BundleEndpointProfile == nil {
			c.add("server.federation.federates_with."+td, "federation configuration for trust domain %q: missing bundle endpoint configuration", td)
		}
	}
	c.warn("federation is not supported by this server and is ignored: manage federated bundles with `spire-server bundle set`")
}

func (c *checker) experimental(e ServerExperimentalBlock) {
	for _, v := range []struct{ key, what, value string }{
		{"cache_reload_interval", "cache reload interval", e.CacheReloadInterval},
		{"full_cache_reload_interval", "full cache reload interval", e.FullCacheReloadInterval},
		{"prune_events_older_than", "prune events interval", e.PruneEventsOlderThan},
		{"sql_transaction_timeout", "SQL transaction timeout interval", e.SQLTransactionTimeout},
		{"event_timeout", "event timeout interval", e.EventTimeout},
	} {
		if v.value == "" {
			continue
		}
		if _, err := time.ParseDuration(v.value); err != nil {
			c.add("server.experimental."+v.key, "could not parse %s: %v", v.what, err)
		}
	}
	if e.AuthOpaPolicyEngine != nil {
		c.warn("experimental auth_opa_policy_engine is not supported and is ignored")
	}
	if e.EventsBasedCache || e.PruneEventsOlderThan != "" || e.EventTimeout != "" || e.SQLTransactionTimeout != "" ||
		e.CacheReloadInterval != "" || e.FullCacheReloadInterval != "" {
		c.warn("experimental cache settings are ignored: the server keeps its entry index current from the change feed")
	}
}

// serverPlugin checks one enabled server plugin and records it in out.
func (c *checker) serverPlugin(p *plugin, out *Server) {
	switch p.Type {
	case "DataStore":
		if p.Name != "sql" {
			c.addAt(p.nameLoc, "pluggability for the DataStore is deprecated; only the built-in %q plugin is supported", "sql")
			return
		}
		if out.DataStore != nil {
			c.addAt(p.typeLoc, "only one DataStore plugin is allowed")
			return
		}
		ds := c.sqlDataStore(p)
		if ds != nil {
			out.DataStore = ds
		}
	case "KeyManager":
		var km *ServerKeyManager
		switch p.Name {
		case "disk":
			var data struct {
				KeysPath string `hcl:"keys_path"`
			}
			if !c.decodeData(p, &data) {
				return
			}
			if data.KeysPath == "" {
				c.addAt(p.at("keys_path"), "plugin %s: keys_path is required", p.label())
				return
			}
			km = &ServerKeyManager{Kind: "disk", KeysPath: data.KeysPath}
		case "memory":
			var data struct{}
			if !c.decodeData(p, &data) {
				return
			}
			km = &ServerKeyManager{Kind: "memory"}
		default:
			c.noBuiltIn(p, "disk", "memory")
			return
		}
		if out.KeyManager != nil {
			c.addAt(p.typeLoc, "plugin type %q constraint not satisfied: expected exactly 1 but got 2", "KeyManager")
			return
		}
		out.KeyManager = km
	case "UpstreamAuthority":
		if p.Name != "disk" {
			c.noBuiltIn(p, "disk")
			return
		}
		var data struct {
			CertFilePath   string `hcl:"cert_file_path"`
			KeyFilePath    string `hcl:"key_file_path"`
			BundleFilePath string `hcl:"bundle_file_path"`
		}
		if !c.decodeData(p, &data) {
			return
		}
		ok := true
		for _, k := range []struct{ key, value string }{{"cert_file_path", data.CertFilePath}, {"key_file_path", data.KeyFilePath}} {
			if k.value == "" {
				c.addAt(p.at(k.key), "plugin %s: %s is required", p.label(), k.key)
				ok = false
			}
		}
		if out.UpstreamAuthority != nil {
			c.addAt(p.typeLoc, "plugin type %q constraint not satisfied: expected at most 1 but got 2", "UpstreamAuthority")
			return
		}
		if ok {
			out.UpstreamAuthority = &UpstreamDisk{CertFilePath: data.CertFilePath, KeyFilePath: data.KeyFilePath, BundleFilePath: data.BundleFilePath}
		}
	case "NodeAttestor":
		switch p.Name {
		case "join_token":
			var data struct{}
			if c.decodeData(p, &data) {
				out.NodeAttestors = append(out.NodeAttestors, ServerNodeAttestor{Name: "join_token"})
			}
		case "x509pop":
			if x := c.serverX509PoP(p); x != nil {
				out.NodeAttestors = append(out.NodeAttestors, ServerNodeAttestor{Name: "x509pop", X509PoP: x})
			}
		case "k8s_psat":
			if k := c.serverK8sPSAT(p); k != nil {
				out.NodeAttestors = append(out.NodeAttestors, ServerNodeAttestor{Name: "k8s_psat", K8sPSAT: k})
			}
		default:
			c.noBuiltIn(p, "join_token", "k8s_psat", "x509pop")
		}
	case "BundlePublisher", "CredentialComposer", "Notifier":
		c.noPlugins(p)
	default:
		c.unsupportedType(p, "DataStore", "KeyManager", "NodeAttestor", "UpstreamAuthority")
	}
}

func (c *checker) sqlDataStore(p *plugin) *DataStore {
	var data struct {
		DatabaseType       ast.Node `hcl:"database_type"`
		ConnectionString   string   `hcl:"connection_string"`
		RoConnectionString string   `hcl:"ro_connection_string"`
		RootCAPath         string   `hcl:"root_ca_path"`
		ClientCertPath     string   `hcl:"client_cert_path"`
		ClientKeyPath      string   `hcl:"client_key_path"`
		ConnMaxLifetime    *string  `hcl:"conn_max_lifetime"`
		MaxOpenConns       *int     `hcl:"max_open_conns"`
		MaxIdleConns       *int     `hcl:"max_idle_conns"`
		DisableMigration   bool     `hcl:"disable_migration"`
		LogSQL             bool     `hcl:"log_sql"`
	}
	if !c.decodeData(p, &data) {
		return nil
	}
	ds := &DataStore{ConnectionString: data.ConnectionString}
	ok := true
	switch n := data.DatabaseType.(type) {
	case nil:
		c.addAt(p.at("database_type"), "datastore-sql: database_type must be set")
		ok = false
	case *ast.LiteralType:
		ds.DatabaseType = strings.Trim(n.Token.Text, `"`)
		switch ds.DatabaseType {
		case "sqlite3", "postgres":
		case "mysql":
			c.addAt(p.at("database_type"), "datastore-sql: unsupported database_type: mysql (hive-identity supports sqlite3 and postgres)")
			ok = false
		default:
			c.addAt(p.at("database_type"), "datastore-sql: unsupported database_type: %s (must be sqlite3 or postgres)", ds.DatabaseType)
			ok = false
		}
	default:
		c.addAt(p.at("database_type"), "datastore-sql: database_type must be \"sqlite3\" or \"postgres\"; aws_mysql and aws_postgres are not supported")
		ok = false
	}
	if data.ConnectionString == "" {
		c.addAt(p.at("connection_string"), "datastore-sql: connection_string must be set")
		ok = false
	}
	if data.ConnMaxLifetime != nil {
		if _, err := time.ParseDuration(*data.ConnMaxLifetime); err != nil {
			c.addAt(p.at("conn_max_lifetime"), "datastore-sql: failed to parse conn_max_lifetime %q: %v", *data.ConnMaxLifetime, err)
			ok = false
		}
	}
	for _, key := range []string{"ro_connection_string", "root_ca_path", "client_cert_path", "client_key_path",
		"conn_max_lifetime", "max_open_conns", "max_idle_conns", "disable_migration", "log_sql"} {
		if p.has(key) {
			c.warn("DataStore \"sql\" %s is not supported and is ignored", key)
		}
	}
	if !ok {
		return nil
	}
	return ds
}

func (c *checker) serverX509PoP(p *plugin) *ServerX509PoP {
	var data struct {
		Mode              string   `hcl:"mode"`
		SPIFFEPrefix      *string  `hcl:"spiffe_prefix"`
		CABundlePath      string   `hcl:"ca_bundle_path"`
		CABundlePaths     []string `hcl:"ca_bundle_paths"`
		AgentPathTemplate string   `hcl:"agent_path_template"`
	}
	if !c.decodeData(p, &data) {
		return nil
	}
	n := len(c.problems)
	x := &ServerX509PoP{Mode: data.Mode, AgentPathTemplate: data.AgentPathTemplate, SPIFFEPrefix: "/spire-exchange/"}
	if x.Mode == "" {
		x.Mode = "external_pki"
	}
	if x.Mode != "external_pki" && x.Mode != "spiffe" {
		c.addAt(p.at("mode"), "plugin %s: mode can only be either spiffe or external_pki", p.label())
	}
	if x.Mode == "external_pki" {
		if data.CABundlePath != "" && len(data.CABundlePaths) > 0 {
			c.addAt(p.at("ca_bundle_paths"), "plugin %s: only one of ca_bundle_path or ca_bundle_paths can be configured, not both", p.label())
		}
		x.CABundlePaths = data.CABundlePaths
		if data.CABundlePath != "" {
			x.CABundlePaths = []string{data.CABundlePath}
		}
		if len(x.CABundlePaths) == 0 {
			c.addAt(p.at("ca_bundle_path"), "plugin %s: one of ca_bundle_path or ca_bundle_paths must be configured", p.label())
		}
	}
	if x.Mode == "spiffe" && (data.CABundlePath != "" || len(data.CABundlePaths) > 0) {
		c.addAt(p.at("ca_bundle_path"), "plugin %s: you can not use ca_bundle_path or ca_bundle_paths in spiffe mode", p.label())
	}
	if x.AgentPathTemplate != "" {
		if err := checkTemplate(x.AgentPathTemplate); err != nil {
			c.addAt(p.at("agent_path_template"), "plugin %s: failed to parse agent svid template: %q: %v", p.label(), x.AgentPathTemplate, err)
		}
	}
	if data.SPIFFEPrefix != nil {
		x.SPIFFEPrefix = *data.SPIFFEPrefix
		if !strings.HasSuffix(x.SPIFFEPrefix, "/") {
			x.SPIFFEPrefix += "/"
		}
	}
	if len(c.problems) > n {
		return nil
	}
	return x
}

func (c *checker) serverK8sPSAT(p *plugin) *ServerK8sPSAT {
	var data struct {
		Clusters map[string]*struct {
			ServiceAccountAllowList []string  `hcl:"service_account_allow_list"`
			Audience                *[]string `hcl:"audience"`
			KubeConfigFile          string    `hcl:"kube_config_file"`
			AllowedNodeLabelKeys    []string  `hcl:"allowed_node_label_keys"`
			AllowedPodLabelKeys     []string  `hcl:"allowed_pod_label_keys"`
		} `hcl:"clusters"`
	}
	if !c.decodeData(p, &data) {
		return nil
	}
	k := &ServerK8sPSAT{Clusters: map[string]K8sPSATCluster{}}
	if len(data.Clusters) == 0 {
		c.warn("NodeAttestor \"k8s_psat\" has no clusters configured: PSAT attestation is effectively disabled")
	}
	ok := true
	for _, name := range sortedKeys(data.Clusters) {
		cl := data.Clusters[name]
		if cl == nil {
			continue
		}
		if len(cl.ServiceAccountAllowList) == 0 {
			c.addAt(p.at("clusters."+name), "plugin %s: cluster %q configuration must have at least one service account allowed", p.label(), name)
			ok = false
		}
		for _, sa := range cl.ServiceAccountAllowList {
			if ns, n, found := strings.Cut(sa, ":"); !found || ns == "" || n == "" {
				c.addAt(p.at("clusters."+name+".service_account_allow_list"), "plugin %s: cluster %q: service account %q must be formatted as namespace:name", p.label(), name, sa)
				ok = false
			}
		}
		kc := K8sPSATCluster{
			ServiceAccountAllowList: cl.ServiceAccountAllowList,
			KubeConfigFile:          cl.KubeConfigFile,
			AllowedNodeLabelKeys:    cl.AllowedNodeLabelKeys,
			AllowedPodLabelKeys:     cl.AllowedPodLabelKeys,
		}
		if cl.Audience != nil {
			kc.Audience = append([]string{}, *cl.Audience...)
		}
		k.Clusters[name] = kc
	}
	if !ok {
		return nil
	}
	return k
}

// ttlWarnings are SPIRE's warnings for SVID TTLs a CA of caTTL cannot
// guarantee: the CA is replaced at 5/6 of its life, capped at 7 days before
// expiry, so an SVID may be cut short.
func ttlWarnings(caTTL, x509, jwt, agent time.Duration) []string {
	const maxSVIDTTL = 7 * 24 * time.Hour
	maxForCA := min(caTTL/6, maxSVIDTTL)
	checks := []struct {
		name string
		ttl  time.Duration
	}{{"default_x509_svid_ttl", x509}, {"default_jwt_svid_ttl", jwt}}
	if agent != 0 {
		checks = append(checks, struct {
			name string
			ttl  time.Duration
		}{"agent_ttl", agent})
	}
	var out []string
	for _, ch := range checks {
		if ch.ttl <= maxForCA {
			continue
		}
		switch {
		case ch.ttl < maxSVIDTTL:
			out = append(out, ch.name+" is too high for the configured ca_ttl value. SVIDs with shorter lifetimes may be issued. "+
				"Please set "+ch.name+" to "+printDuration(maxForCA)+" or less, or the ca_ttl to "+printDuration(ch.ttl*6)+
				" or more, to guarantee the full "+ch.name+" lifetime when CA rotations are scheduled.")
		case caTTL < maxSVIDTTL*6:
			out = append(out, ch.name+" is too high and the ca_ttl is too low. SVIDs with shorter lifetimes may be issued. "+
				"Please set "+ch.name+" to "+printDuration(maxSVIDTTL)+" or less, and the ca_ttl to "+printDuration(maxSVIDTTL*6)+
				" or more, to guarantee the full "+ch.name+" lifetime when CA rotations are scheduled.")
		default:
			out = append(out, ch.name+" is too high. SVIDs with shorter lifetimes may be issued. Please set "+ch.name+" to "+
				printDuration(maxForCA)+" or less to guarantee the full "+ch.name+" lifetime when CA rotations are scheduled.")
		}
	}
	return out
}

// printDuration prints a duration as SPIRE does in TTL warnings ("10m", "12h").
func printDuration(d time.Duration) string {
	s := d.Truncate(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// checkTemplate checks the syntax of an agent path template; the functions
// it may call (SPIRE's sprig subset) are checked when the attestor runs it.
func checkTemplate(text string) error {
	t := parse.New("agent_path_template")
	t.Mode = parse.SkipFuncCheck
	_, err := t.Parse(text, "", "", map[string]*parse.Tree{})
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
