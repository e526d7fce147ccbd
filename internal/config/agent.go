package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Agent defaults, as SPIRE 1.13 applies them.
const (
	DefaultAgentConfigPath        = "conf/agent/agent.conf"
	DefaultAgentSocketPath        = "/tmp/spire-agent/public/api.sock"
	DefaultAgentDataDir           = "."
	DefaultTrustBundleFormat      = "pem"
	DefaultRebootstrapDelay       = 10 * time.Minute
	DefaultSyncInterval           = 5 * time.Second
	DefaultSVIDCacheMaxSize       = 1000
	DefaultSDSSVIDName            = "default"
	DefaultSDSBundleName          = "ROOTCA"
	DefaultSDSAllBundlesName      = "ALL"
	DefaultWorkloadX509SVIDKey    = "ec-p256"
	minimumAvailabilityTarget     = 24 * time.Hour
	rebootstrapNever              = "never"
	rebootstrapAuto               = "auto"
	rebootstrapAlways             = "always"
	trustBundleFormatSPIFFE       = "spiffe"
	deprecatedRetryBootstrapWarn  = "The 'retry_bootstrap' configuration is deprecated. It will be removed in SPIRE 1.14. Please test without the flag before upgrading."
	deprecatedSyncAuthorizedEntry = "The 'use_sync_authorized_entries' configuration is deprecated. The option to disable it will be removed in SPIRE 1.13."
)

// AgentFile is agent.conf as written: the blocks SPIRE 1.13 reads.
// LoadAgent fills it; Override applies command-line flags; Check checks it.
type AgentFile struct {
	Agent        *AgentBlock       `hcl:"agent"`
	Plugins      ast.Node          `hcl:"plugins"`
	Telemetry    TelemetryBlock    `hcl:"telemetry"`
	HealthChecks HealthChecksBlock `hcl:"health_checks"`

	source
}

// AgentBlock is the agent block, with every key SPIRE 1.13 accepts.
type AgentBlock struct {
	DataDir                       string                 `hcl:"data_dir"`
	AdminSocketPath               string                 `hcl:"admin_socket_path"`
	InsecureBootstrap             bool                   `hcl:"insecure_bootstrap"`
	RetryBootstrap                *bool                  `hcl:"retry_bootstrap"`
	RebootstrapMode               string                 `hcl:"rebootstrap_mode"`
	RebootstrapDelay              string                 `hcl:"rebootstrap_delay"`
	JoinToken                     string                 `hcl:"join_token"`
	JoinTokenFile                 string                 `hcl:"join_token_file"`
	LogFile                       string                 `hcl:"log_file"`
	LogFormat                     string                 `hcl:"log_format"`
	LogLevel                      string                 `hcl:"log_level"`
	LogSourceLocation             bool                   `hcl:"log_source_location"`
	SDS                           SDSBlock               `hcl:"sds"`
	ServerAddress                 string                 `hcl:"server_address"`
	ServerPort                    int                    `hcl:"server_port"`
	SocketPath                    string                 `hcl:"socket_path"`
	WorkloadX509SVIDKeyType       string                 `hcl:"workload_x509_svid_key_type"`
	TrustBundleFormat             string                 `hcl:"trust_bundle_format"`
	TrustBundlePath               string                 `hcl:"trust_bundle_path"`
	TrustBundleUnixSocket         string                 `hcl:"trust_bundle_unix_socket"`
	TrustBundleURL                string                 `hcl:"trust_bundle_url"`
	TrustDomain                   string                 `hcl:"trust_domain"`
	AllowUnauthenticatedVerifiers bool                   `hcl:"allow_unauthenticated_verifiers"`
	AllowedForeignJWTClaims       []string               `hcl:"allowed_foreign_jwt_claims"`
	AvailabilityTarget            string                 `hcl:"availability_target"`
	X509SVIDCacheMaxSize          int                    `hcl:"x509_svid_cache_max_size"`
	JWTSVIDCacheMaxSize           int                    `hcl:"jwt_svid_cache_max_size"`
	AuthorizedDelegates           []string               `hcl:"authorized_delegates"`
	Experimental                  AgentExperimentalBlock `hcl:"experimental"`

	// Undocumented in SPIRE, accepted and ignored here.
	ProfilingEnabled bool     `hcl:"profiling_enabled"`
	ProfilingPort    int      `hcl:"profiling_port"`
	ProfilingFreq    int      `hcl:"profiling_freq"`
	ProfilingNames   []string `hcl:"profiling_names"`
}

// SDSBlock is agent.sds.
type SDSBlock struct {
	DefaultSVIDName             string `hcl:"default_svid_name"`
	DefaultBundleName           string `hcl:"default_bundle_name"`
	DefaultAllBundlesName       string `hcl:"default_all_bundles_name"`
	DisableSPIFFECertValidation bool   `hcl:"disable_spiffe_cert_validation"`
}

// AgentExperimentalBlock is agent.experimental.
type AgentExperimentalBlock struct {
	SyncInterval             string   `hcl:"sync_interval"`
	NamedPipeName            string   `hcl:"named_pipe_name"`
	AdminNamedPipeName       string   `hcl:"admin_named_pipe_name"`
	UseSyncAuthorizedEntries *bool    `hcl:"use_sync_authorized_entries"`
	RequirePQKEM             bool     `hcl:"require_pq_kem"`
	FeatureFlags             []string `hcl:"feature_flags"`
}

// Agent is the typed, checked agent configuration, defaults filled as
// SPIRE 1.13 fills them. The agent CLI builds the agent from it.
type Agent struct {
	TrustDomain spiffeid.TrustDomain
	// ServerAddress and ServerPort locate the server's TCP endpoint (both required).
	ServerAddress string
	ServerPort    int

	// Bootstrap trust: exactly one of TrustBundlePath, TrustBundleURL or
	// InsecureBootstrap is set.
	TrustBundlePath string
	TrustBundleURL  string
	// TrustBundleUnixSocket, when set, fetches TrustBundleURL (http://) over this socket.
	TrustBundleUnixSocket string
	TrustBundleFormat     string // "pem" (default) or "spiffe"
	InsecureBootstrap     bool
	RetryBootstrap        bool          // default true
	RebootstrapMode       string        // "never" (default), "auto", "always"
	RebootstrapDelay      time.Duration // default 10m

	// DataDir holds the agent's state (default ".").
	DataDir string
	// SocketPath is the absolute path of the Workload API socket
	// (default /tmp/spire-agent/public/api.sock).
	SocketPath string
	// AdminSocketPath is the absolute path of the admin API socket; empty
	// disables the admin API (the default).
	AdminSocketPath string
	// JoinToken is join_token, or the trimmed content of join_token_file.
	JoinToken string

	Log Log

	// SyncInterval is how often the agent polls the server when it cannot
	// be pushed changes (experimental.sync_interval, default 5s).
	SyncInterval                  time.Duration
	WorkloadX509SVIDKeyType       string // "ec-p256" (default) or "rsa-2048"
	X509SVIDCacheMaxSize          int    // default 1000
	JWTSVIDCacheMaxSize           int    // default 1000
	AllowUnauthenticatedVerifiers bool
	AllowedForeignJWTClaims       []string
	AuthorizedDelegates           []string
	AvailabilityTarget            time.Duration // 0: unset
	SDS                           SDS

	// NodeAttestor is the single NodeAttestor plugin; its Name is empty when
	// none is declared (validate accepts that, as SPIRE does; run refuses it).
	NodeAttestor AgentNodeAttestor
	// KeyManager is the KeyManager plugin; its Kind is empty when none is declared.
	KeyManager AgentKeyManager
	// WorkloadAttestorUnix is the WorkloadAttestor "unix" plugin; nil when
	// it is not declared.
	WorkloadAttestorUnix *WorkloadAttestorUnix
	// WorkloadAttestorK8s is the WorkloadAttestor "k8s" plugin; nil when it
	// is not declared.
	WorkloadAttestorK8s *WorkloadAttestorK8s

	HealthChecks HealthChecks
	Telemetry    Telemetry

	// Warnings are what SPIRE would log as warnings about this
	// configuration; the CLI logs them once its logger exists.
	Warnings []string
}

// SDS is the typed agent.sds block.
type SDS struct {
	DefaultSVIDName             string // default "default"
	DefaultBundleName           string // default "ROOTCA"
	DefaultAllBundlesName       string // default "ALL"
	DisableSPIFFECertValidation bool
}

// AgentNodeAttestor is the agent's NodeAttestor plugin.
type AgentNodeAttestor struct {
	Name    string        // "join_token", "x509pop" or "k8s_psat"
	X509PoP *AgentX509PoP // set when Name is "x509pop"
	K8sPSAT *AgentK8sPSAT // set when Name is "k8s_psat"
}

// DefaultK8sPSATTokenPath is where the agent's projected service account
// token is read by default (SPIRE's default).
const DefaultK8sPSATTokenPath = "/var/run/secrets/tokens/spire-agent"

// AgentK8sPSAT is the agent k8s_psat attestor's plugin_data.
type AgentK8sPSAT struct {
	Cluster   string // required: the cluster name the server's clusters map knows
	TokenPath string // default DefaultK8sPSATTokenPath
}

// AgentX509PoP is the agent x509pop attestor's plugin_data.
type AgentX509PoP struct {
	PrivateKeyPath    string // required
	CertificatePath   string // required
	IntermediatesPath string // optional
}

// AgentKeyManager is the agent's KeyManager plugin.
type AgentKeyManager struct {
	Kind      string // "disk" or "memory"
	Directory string // disk: where keys.json is kept
}

// WorkloadAttestorK8s is the WorkloadAttestor "k8s" plugin_data, with
// SPIRE's keys; zero values mean the attestor's defaults.
type WorkloadAttestorK8s struct {
	KubeletReadOnlyPort        int
	KubeletSecurePort          int
	MaxPollAttempts            int
	PollRetryInterval          time.Duration
	KubeletCAPath              string
	SkipKubeletVerification    bool
	TokenPath                  string
	CertificatePath            string
	PrivateKeyPath             string
	UseAnonymousAuthentication bool
	NodeName                   string
	NodeNameEnv                string
	ReloadInterval             time.Duration
	DisableContainerSelectors  bool
	// ProcDir is where /proc/<pid>/cgroup is read [proc_dir]. Extension:
	// for tests (a process's cgroup file without a cluster); default /proc.
	ProcDir string
}

func (c *checker) workloadAttestorK8s(p *plugin, out *Agent) {
	var data struct {
		KubeletReadOnlyPort        int    `hcl:"kubelet_read_only_port"`
		KubeletSecurePort          int    `hcl:"kubelet_secure_port"`
		MaxPollAttempts            int    `hcl:"max_poll_attempts"`
		PollRetryInterval          string `hcl:"poll_retry_interval"`
		KubeletCAPath              string `hcl:"kubelet_ca_path"`
		SkipKubeletVerification    bool   `hcl:"skip_kubelet_verification"`
		TokenPath                  string `hcl:"token_path"`
		CertificatePath            string `hcl:"certificate_path"`
		PrivateKeyPath             string `hcl:"private_key_path"`
		UseAnonymousAuthentication bool   `hcl:"use_anonymous_authentication"`
		NodeName                   string `hcl:"node_name"`
		NodeNameEnv                string `hcl:"node_name_env"`
		ReloadInterval             string `hcl:"reload_interval"`
		DisableContainerSelectors  bool   `hcl:"disable_container_selectors"`
		ProcDir                    string `hcl:"proc_dir"`
	}
	if !c.decodeData(p, &data) {
		return
	}
	k := &WorkloadAttestorK8s{
		KubeletReadOnlyPort: data.KubeletReadOnlyPort, KubeletSecurePort: data.KubeletSecurePort,
		MaxPollAttempts: data.MaxPollAttempts, KubeletCAPath: data.KubeletCAPath,
		SkipKubeletVerification: data.SkipKubeletVerification, TokenPath: data.TokenPath,
		CertificatePath: data.CertificatePath, PrivateKeyPath: data.PrivateKeyPath,
		UseAnonymousAuthentication: data.UseAnonymousAuthentication, NodeName: data.NodeName,
		NodeNameEnv: data.NodeNameEnv, DisableContainerSelectors: data.DisableContainerSelectors,
		ProcDir: data.ProcDir,
	}
	if data.PollRetryInterval != "" {
		k.PollRetryInterval = c.duration(p.path+".plugin_data.poll_retry_interval", "poll_retry_interval", data.PollRetryInterval)
	}
	if data.ReloadInterval != "" {
		k.ReloadInterval = c.duration(p.path+".plugin_data.reload_interval", "reload_interval", data.ReloadInterval)
	}
	if k.KubeletReadOnlyPort != 0 && k.KubeletSecurePort != 0 {
		c.add(p.path, "cannot use both the read-only and the secure port")
	}
	out.WorkloadAttestorK8s = k
}

// WorkloadAttestorUnix is the WorkloadAttestor "unix" plugin_data.
type WorkloadAttestorUnix struct {
	// DiscoverWorkloadPath adds unix:path and unix:sha256 selectors.
	DiscoverWorkloadPath bool
	// WorkloadSizeLimit caps the bytes hashed for unix:sha256 (0: no limit,
	// negative: no hash).
	WorkloadSizeLimit int64
}

// LoadAgent reads and decodes agent.conf at path (DefaultAgentConfigPath when
// empty). Its errors are SPIRE's, as for LoadServer.
func LoadAgent(path string, opts LoadOptions) (*AgentFile, error) {
	f := &AgentFile{}
	return fileOrNil(f, readDocument(path, DefaultAgentConfigPath, opts, f))
}

// ParseAgent decodes agent.conf text; name is the file name used in locations.
func ParseAgent(name, data string) (*AgentFile, error) {
	f := &AgentFile{}
	return fileOrNil(f, decodeDocument(name, data, f))
}

// AgentOverrides are the spire-agent run/validate flags that override
// agent.conf; zero values (nil for RetryBootstrap) leave the file's value.
type AgentOverrides struct {
	AllowUnauthenticatedVerifiers bool   // -allowUnauthenticatedVerifiers
	DataDir                       string // -dataDir
	InsecureBootstrap             bool   // -insecureBootstrap
	JoinToken                     string // -joinToken
	JoinTokenFile                 string // -joinTokenFile
	LogFile                       string // -logFile
	LogFormat                     string // -logFormat
	LogLevel                      string // -logLevel
	LogSourceLocation             bool   // -logSourceLocation
	RebootstrapDelay              string // -rebootstrapDelay
	RebootstrapMode               string // -rebootstrapMode
	RetryBootstrap                *bool  // -retryBootstrap, only when given
	ServerAddress                 string // -serverAddress
	ServerPort                    int    // -serverPort
	SocketPath                    string // -socketPath
	TrustBundlePath               string // -trustBundle
	TrustBundleFormat             string // -trustBundleFormat
	TrustBundleURL                string // -trustBundleUrl
	TrustDomain                   string // -trustDomain
}

// Override applies command-line flags over the file: a flag that is set
// wins over the file, which wins over the defaults (SPIRE's precedence).
func (f *AgentFile) Override(o AgentOverrides) {
	d := f.document()
	if f.Agent == nil {
		f.Agent = &AgentBlock{}
	}
	a := f.Agent
	override(d, "agent.data_dir", "-dataDir", o.DataDir, &a.DataDir)
	override(d, "agent.join_token", "-joinToken", o.JoinToken, &a.JoinToken)
	override(d, "agent.join_token_file", "-joinTokenFile", o.JoinTokenFile, &a.JoinTokenFile)
	override(d, "agent.log_file", "-logFile", o.LogFile, &a.LogFile)
	override(d, "agent.log_format", "-logFormat", o.LogFormat, &a.LogFormat)
	override(d, "agent.log_level", "-logLevel", o.LogLevel, &a.LogLevel)
	override(d, "agent.rebootstrap_delay", "-rebootstrapDelay", o.RebootstrapDelay, &a.RebootstrapDelay)
	override(d, "agent.rebootstrap_mode", "-rebootstrapMode", o.RebootstrapMode, &a.RebootstrapMode)
	override(d, "agent.server_address", "-serverAddress", o.ServerAddress, &a.ServerAddress)
	override(d, "agent.socket_path", "-socketPath", o.SocketPath, &a.SocketPath)
	override(d, "agent.trust_bundle_path", "-trustBundle", o.TrustBundlePath, &a.TrustBundlePath)
	override(d, "agent.trust_bundle_format", "-trustBundleFormat", o.TrustBundleFormat, &a.TrustBundleFormat)
	override(d, "agent.trust_bundle_url", "-trustBundleUrl", o.TrustBundleURL, &a.TrustBundleURL)
	override(d, "agent.trust_domain", "-trustDomain", o.TrustDomain, &a.TrustDomain)
	override(d, "agent.allow_unauthenticated_verifiers", "-allowUnauthenticatedVerifiers", o.AllowUnauthenticatedVerifiers, &a.AllowUnauthenticatedVerifiers)
	override(d, "agent.insecure_bootstrap", "-insecureBootstrap", o.InsecureBootstrap, &a.InsecureBootstrap)
	override(d, "agent.log_source_location", "-logSourceLocation", o.LogSourceLocation, &a.LogSourceLocation)
	override(d, "agent.server_port", "-serverPort", o.ServerPort, &a.ServerPort)
	if o.RetryBootstrap != nil {
		v := *o.RetryBootstrap
		a.RetryBootstrap = &v
		d.overridden("agent.retry_bootstrap", "-retryBootstrap")
	}
}

// Validate checks the file and returns every problem found (an *Error), or
// nil. It is Check without the result.
func (f *AgentFile) Validate() error {
	_, err := f.Check()
	return err
}

// Check checks the file and returns the typed configuration. On failure the
// error is an *Error listing every problem with its location, ordered as
// SPIRE checks them. A file without NodeAttestor, KeyManager or
// WorkloadAttestor plugins passes, as it passes SPIRE's validate.
func (f *AgentFile) Check() (*Agent, error) {
	c := &checker{d: f.document()}
	a := f.Agent
	if a == nil {
		a = &AgentBlock{}
	}
	out := &Agent{}

	c.featureFlags("agent.experimental.feature_flags", a.Experimental.FeatureFlags)

	// SPIRE's validateConfig.
	if f.Plugins == nil {
		c.addAt(Location{File: f.doc.path}, "plugins section must be configured")
	}
	if a.JoinToken != "" && a.JoinTokenFile != "" {
		c.add("agent.join_token_file", "only one of join_token or join_token_file can be specified, not both")
	}
	if a.ServerAddress == "" {
		c.add("agent", "server_address must be configured")
	}
	if a.ServerPort == 0 {
		c.add("agent", "server_port must be configured")
	} else if a.ServerPort < 0 || a.ServerPort > 65535 {
		c.add("agent.server_port", "server_port %d is not a valid port", a.ServerPort)
	}
	if a.TrustDomain == "" {
		c.add("agent", "trust_domain must be configured")
	}
	if a.InsecureBootstrap {
		switch {
		case a.TrustBundleURL != "" && a.TrustBundlePath != "":
			c.add("agent.insecure_bootstrap", "only one of insecure_bootstrap, trust_bundle_url, or trust_bundle_path can be specified, not the three options")
		case a.TrustBundleURL != "":
			c.add("agent.insecure_bootstrap", "only one of insecure_bootstrap or trust_bundle_url can be specified, not both")
		case a.TrustBundlePath != "":
			c.add("agent.insecure_bootstrap", "only one of insecure_bootstrap or trust_bundle_path can be specified, not both")
		}
	} else if a.TrustBundlePath == "" && a.TrustBundleURL == "" {
		c.add("agent", "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set")
	}
	if a.TrustBundleURL != "" && a.TrustBundlePath != "" {
		c.add("agent.trust_bundle_url", "only one of trust_bundle_url or trust_bundle_path can be specified, not both")
	}
	format := a.TrustBundleFormat
	if format == "" {
		format = DefaultTrustBundleFormat
	}
	if format != DefaultTrustBundleFormat && format != trustBundleFormatSPIFFE {
		c.add("agent.trust_bundle_format", "invalid value for trust_bundle_format, expected %q or %q", DefaultTrustBundleFormat, trustBundleFormatSPIFFE)
	}
	if a.TrustBundleUnixSocket != "" && a.TrustBundleURL == "" {
		c.add("agent.trust_bundle_unix_socket", "if trust_bundle_unix_socket is specified, so must be trust_bundle_url")
	}
	if a.TrustBundleURL != "" {
		c.trustBundleURL(a)
	}
	if a.Experimental.NamedPipeName != "" {
		c.add("agent.experimental.named_pipe_name", "invalid configuration: named_pipe_name is not supported in this platform; please use socket_path instead")
	}
	if a.Experimental.AdminNamedPipeName != "" {
		c.add("agent.experimental.admin_named_pipe_name", "invalid configuration: admin_named_pipe_name is not supported in this platform; please use admin_socket_path instead")
	}

	// Bootstrap.
	out.RebootstrapMode = a.RebootstrapMode
	switch out.RebootstrapMode {
	case rebootstrapNever, rebootstrapAuto, rebootstrapAlways:
	case "":
		out.RebootstrapMode = rebootstrapNever
	default:
		c.add("agent.rebootstrap_mode", "unknown rebootstrap mode specified: %s", out.RebootstrapMode)
	}
	if out.RebootstrapMode != rebootstrapNever && out.RebootstrapMode != "" {
		if a.InsecureBootstrap {
			c.add("agent.rebootstrap_mode", "insecure_bootstrap option can not be used with rebootstrapping")
		}
		if a.RetryBootstrap != nil {
			c.add("agent.retry_bootstrap", "you can not set retry_bootstrap when using reboostrap_mode")
		}
	}
	out.RebootstrapDelay = DefaultRebootstrapDelay
	if a.RebootstrapDelay != "" {
		d, err := time.ParseDuration(a.RebootstrapDelay)
		if err != nil {
			c.add("agent.rebootstrap_delay", "error parsing rebootstrap delay duration: %v", err)
		}
		out.RebootstrapDelay = d
	}
	out.SyncInterval = DefaultSyncInterval
	if a.Experimental.SyncInterval != "" {
		d, err := time.ParseDuration(a.Experimental.SyncInterval)
		switch {
		case err != nil:
			c.add("agent.experimental.sync_interval", "could not parse synchronization interval: %v", err)
		case d <= 0:
			c.add("agent.experimental.sync_interval", "sync_interval %q must be positive", a.Experimental.SyncInterval)
		default:
			out.SyncInterval = d
		}
	}
	out.ServerAddress = a.ServerAddress
	out.ServerPort = a.ServerPort

	// Logger.
	out.Log = c.log("agent", a.LogLevel, a.LogFormat, a.LogFile, a.LogSourceLocation)

	out.RetryBootstrap = true
	if a.RetryBootstrap != nil {
		c.warn(deprecatedRetryBootstrapWarn)
		out.RetryBootstrap = *a.RetryBootstrap
	}
	if a.Experimental.UseSyncAuthorizedEntries != nil {
		c.warn(deprecatedSyncAuthorizedEntry)
	}

	if a.X509SVIDCacheMaxSize < 0 {
		c.add("agent.x509_svid_cache_max_size", "x509_svid_cache_max_size should not be negative")
	}
	out.X509SVIDCacheMaxSize = cacheSize(a.X509SVIDCacheMaxSize)
	if a.JWTSVIDCacheMaxSize < 0 {
		c.add("agent.jwt_svid_cache_max_size", "jwt_svid_cache_max_size should not be negative")
	}
	out.JWTSVIDCacheMaxSize = cacheSize(a.JWTSVIDCacheMaxSize)

	if a.TrustDomain != "" {
		out.TrustDomain = c.trustDomain("agent.trust_domain", a.TrustDomain)
	}

	// Sockets.
	out.SocketPath = c.socketPath("agent.socket_path", "socket_path", orDefault(a.SocketPath, DefaultAgentSocketPath))
	if a.AdminSocketPath != "" {
		admin := c.socketPath("agent.admin_socket_path", "admin_socket_path", a.AdminSocketPath)
		if strings.HasPrefix(admin, filepath.Dir(out.SocketPath)+"/") {
			c.add("agent.admin_socket_path", "admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket")
		}
		out.AdminSocketPath = admin
	}

	// Join token.
	out.JoinToken = a.JoinToken
	if a.JoinTokenFile != "" {
		raw, err := os.ReadFile(a.JoinTokenFile)
		switch {
		case err != nil:
			c.add("agent.join_token_file", "unable to read join token file %q: %v", a.JoinTokenFile, err)
		case strings.TrimSpace(string(raw)) == "":
			c.add("agent.join_token_file", "join token file is empty")
		default:
			out.JoinToken = strings.TrimSpace(string(raw))
		}
	}

	out.DataDir = a.DataDir
	if out.DataDir == "" {
		out.DataDir = DefaultAgentDataDir
	}
	out.SDS = SDS{
		DefaultSVIDName:             orDefault(a.SDS.DefaultSVIDName, DefaultSDSSVIDName),
		DefaultBundleName:           orDefault(a.SDS.DefaultBundleName, DefaultSDSBundleName),
		DefaultAllBundlesName:       orDefault(a.SDS.DefaultAllBundlesName, DefaultSDSAllBundlesName),
		DisableSPIFFECertValidation: a.SDS.DisableSPIFFECertValidation,
	}
	if out.SDS.DefaultAllBundlesName == out.SDS.DefaultBundleName {
		c.warn(`The "default_bundle_name" and "default_all_bundles_name" configurables have the same value. "default_all_bundles_name" will be ignored. Please configure distinct values or use the defaults. This will be a configuration error in a future release.`)
	}
	out.TrustBundlePath = a.TrustBundlePath
	out.TrustBundleURL = a.TrustBundleURL
	out.TrustBundleUnixSocket = a.TrustBundleUnixSocket
	out.TrustBundleFormat = format
	out.InsecureBootstrap = a.InsecureBootstrap

	out.WorkloadX509SVIDKeyType = DefaultWorkloadX509SVIDKey
	if a.WorkloadX509SVIDKeyType != "" {
		switch k := strings.ToLower(a.WorkloadX509SVIDKeyType); k {
		case "rsa-2048", "ec-p256":
			out.WorkloadX509SVIDKeyType = k
		default:
			c.add("agent.workload_x509_svid_key_type", "key type %q is unknown; must be one of [rsa-2048, ec-p256]", a.WorkloadX509SVIDKeyType)
		}
	}
	out.AllowedForeignJWTClaims = a.AllowedForeignJWTClaims

	plugins := c.plugins(f.Plugins)

	c.problems = append(c.problems, f.doc.unknown...)

	out.AllowUnauthenticatedVerifiers = a.AllowUnauthenticatedVerifiers
	for _, d := range a.AuthorizedDelegates {
		if err := memberOf(out.TrustDomain, d); err != nil {
			c.add("agent.authorized_delegates", "error validating authorized delegate: %v", err)
		}
	}
	out.AuthorizedDelegates = a.AuthorizedDelegates
	if a.AvailabilityTarget != "" {
		t, err := time.ParseDuration(a.AvailabilityTarget)
		switch {
		case err != nil:
			c.add("agent.availability_target", "unable to parse availability_target: %v", err)
		case t < minimumAvailabilityTarget:
			c.add("agent.availability_target", "availability_target must be at least %s", minimumAvailabilityTarget)
		default:
			out.AvailabilityTarget = t
		}
	}
	if a.ProfilingEnabled {
		c.warn("profiling_enabled is not supported and is ignored")
	}

	// Beyond SPIRE's validate: plugins, health checks and telemetry.
	for _, p := range plugins {
		c.agentPlugin(p, out)
	}
	out.HealthChecks = c.healthChecks(f.HealthChecks)
	out.Telemetry = c.telemetry(f.Telemetry)

	out.Warnings = c.warnings
	if err := c.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *checker) trustBundleURL(a *AgentBlock) {
	u, err := url.Parse(a.TrustBundleURL)
	if err != nil {
		c.add("agent.trust_bundle_url", "unable to parse trust bundle URL: %v", err)
		return
	}
	if a.TrustBundleUnixSocket != "" {
		if u.Scheme != "http" {
			c.add("agent.trust_bundle_url", "trust bundle URL must start with http:// when used with trust bundle unix socket")
		}
		for key := range u.Query() {
			if strings.HasPrefix(key, "spiffe-") {
				c.add("agent.trust_bundle_url", "trust_bundle_url query params can not start with spiffe-")
			}
			if strings.HasPrefix(key, "spire-") {
				c.add("agent.trust_bundle_url", "trust_bundle_url query params can not start with spire-")
			}
		}
		return
	}
	if u.Scheme != "https" {
		c.add("agent.trust_bundle_url", "trust bundle URL must start with https://")
	}
}

// agentPlugin checks one enabled agent plugin and records it in out.
func (c *checker) agentPlugin(p *plugin, out *Agent) {
	switch p.Type {
	case "NodeAttestor":
		var na AgentNodeAttestor
		switch p.Name {
		case "join_token":
			var data struct{}
			if !c.decodeData(p, &data) {
				return
			}
			na = AgentNodeAttestor{Name: "join_token"}
		case "x509pop":
			var data struct {
				PrivateKeyPath    string `hcl:"private_key_path"`
				CertificatePath   string `hcl:"certificate_path"`
				IntermediatesPath string `hcl:"intermediates_path"`
			}
			if !c.decodeData(p, &data) {
				return
			}
			ok := true
			for _, k := range []struct{ key, value string }{{"private_key_path", data.PrivateKeyPath}, {"certificate_path", data.CertificatePath}} {
				if k.value == "" {
					c.addAt(p.at(k.key), "plugin %s: %s is required", p.label(), k.key)
					ok = false
				}
			}
			if !ok {
				return
			}
			na = AgentNodeAttestor{Name: "x509pop", X509PoP: &AgentX509PoP{
				PrivateKeyPath: data.PrivateKeyPath, CertificatePath: data.CertificatePath, IntermediatesPath: data.IntermediatesPath,
			}}
		case "k8s_psat":
			var data struct {
				Cluster   string `hcl:"cluster"`
				TokenPath string `hcl:"token_path"`
			}
			if !c.decodeData(p, &data) {
				return
			}
			if data.Cluster == "" {
				c.addAt(p.at("cluster"), "plugin %s: missing required cluster block", p.label())
				return
			}
			na = AgentNodeAttestor{Name: "k8s_psat", K8sPSAT: &AgentK8sPSAT{
				Cluster: data.Cluster, TokenPath: orDefault(data.TokenPath, DefaultK8sPSATTokenPath),
			}}
		default:
			c.noBuiltIn(p, "join_token", "k8s_psat", "x509pop")
			return
		}
		if out.NodeAttestor.Name != "" {
			c.addAt(p.typeLoc, "plugin type %q constraint not satisfied: expected exactly 1 but got 2", "NodeAttestor")
			return
		}
		out.NodeAttestor = na
	case "KeyManager":
		var km AgentKeyManager
		switch p.Name {
		case "disk":
			var data struct {
				Directory string `hcl:"directory"`
			}
			if !c.decodeData(p, &data) {
				return
			}
			if data.Directory == "" {
				c.addAt(p.at("directory"), "plugin %s: directory must be configured", p.label())
				return
			}
			km = AgentKeyManager{Kind: "disk", Directory: data.Directory}
		case "memory":
			var data struct{}
			if !c.decodeData(p, &data) {
				return
			}
			km = AgentKeyManager{Kind: "memory"}
		default:
			c.noBuiltIn(p, "disk", "memory")
			return
		}
		if out.KeyManager.Kind != "" {
			c.addAt(p.typeLoc, "plugin type %q constraint not satisfied: expected exactly 1 but got 2", "KeyManager")
			return
		}
		out.KeyManager = km
	case "WorkloadAttestor":
		if p.Name == "k8s" {
			c.workloadAttestorK8s(p, out)
			return
		}
		if p.Name != "unix" {
			c.noBuiltIn(p, "k8s", "unix")
			return
		}
		var data struct {
			DiscoverWorkloadPath bool  `hcl:"discover_workload_path"`
			WorkloadSizeLimit    int64 `hcl:"workload_size_limit"`
		}
		if !c.decodeData(p, &data) {
			return
		}
		out.WorkloadAttestorUnix = &WorkloadAttestorUnix{DiscoverWorkloadPath: data.DiscoverWorkloadPath, WorkloadSizeLimit: data.WorkloadSizeLimit}
	case "SVIDStore":
		c.noPlugins(p)
	default:
		c.unsupportedType(p, "KeyManager", "NodeAttestor", "WorkloadAttestor")
	}
}

// memberOf checks that s is a SPIFFE ID in td.
func memberOf(td spiffeid.TrustDomain, s string) error {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return err
	}
	if !id.MemberOf(td) {
		return fmt.Errorf("%q is not a member of trust domain %q", s, td.Name())
	}
	return nil
}

func cacheSize(n int) int {
	if n <= 0 {
		return DefaultSVIDCacheMaxSize
	}
	return n
}
