package config

import (
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const serverName = "server.conf"

// serverConf is a valid server.conf with serverExtra inside the server block,
// pluginsExtra inside the plugins block and topExtra after both.
func serverConf(serverExtra, pluginsExtra, topExtra string) string {
	return `server {
    trust_domain = "example.org"
    data_dir = "/var/lib/hid"
    socket_path = "/tmp/hid-test/api.sock"
` + serverExtra + `
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "/var/lib/hid/datastore.sqlite3"
        }
    }
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
` + pluginsExtra + `
}
` + topExtra
}

func checkServer(t *testing.T, text string) (*Server, error) {
	t.Helper()
	return parseText(t, ParseServer, serverName, text).Check()
}

func TestServerDefaults(t *testing.T) {
	s, err := checkServer(t, `server {
    trust_domain = "example.org"
    data_dir = "./data"
}
plugins {}
`)
	if err != nil {
		t.Fatal(err)
	}
	if s.TrustDomain != spiffeid.RequireTrustDomainFromString("example.org") {
		t.Errorf("TrustDomain = %v", s.TrustDomain)
	}
	if got := s.BindAddress.String(); got != "0.0.0.0:8081" {
		t.Errorf("BindAddress = %s, want 0.0.0.0:8081", got)
	}
	if s.SocketPath != "/tmp/spire-server/private/api.sock" {
		t.Errorf("SocketPath = %q", s.SocketPath)
	}
	for _, d := range []struct {
		name      string
		got, want time.Duration
	}{
		{"CATTL", s.CATTL, 24 * time.Hour},
		{"X509SVIDTTL", s.X509SVIDTTL, time.Hour},
		{"JWTSVIDTTL", s.JWTSVIDTTL, 5 * time.Minute},
		{"AgentTTL", s.AgentTTL, 0},
	} {
		if d.got != d.want {
			t.Errorf("%s = %v, want %v", d.name, d.got, d.want)
		}
	}
	if s.CAKeyType != "ec-p256" || s.JWTKeyType != "ec-p256" {
		t.Errorf("key types = %q/%q", s.CAKeyType, s.JWTKeyType)
	}
	if want := (pkix.Name{Country: []string{"US"}, Organization: []string{"SPIFFE"}}); !reflect.DeepEqual(s.CASubject, want) {
		t.Errorf("CASubject = %v", s.CASubject)
	}
	if s.Log.Level.String() != "INFO" || s.Log.Format != "text" || s.Log.File != "" {
		t.Errorf("Log = %+v", s.Log)
	}
	if !s.RateLimitAttestation || !s.RateLimitSigning {
		t.Errorf("rate limits off by default")
	}
	if want := (HealthChecks{BindAddress: "localhost", BindPort: 80, LivePath: "/live", ReadyPath: "/ready"}); s.HealthChecks != want {
		t.Errorf("HealthChecks = %+v", s.HealthChecks)
	}
	if s.Telemetry.PrometheusEnabled || !s.Telemetry.EnableHostnameLabel {
		t.Errorf("Telemetry = %+v", s.Telemetry)
	}
	abs, _ := filepath.Abs("./data")
	if s.DataDir != "./data" || abs == "" {
		t.Errorf("DataDir = %q", s.DataDir)
	}
	if s.DataStore != nil || s.KeyManager != nil || s.UpstreamAuthority != nil || len(s.NodeAttestors) != 0 {
		t.Errorf("plugins from an empty block: %+v %+v %+v %+v", s.DataStore, s.KeyManager, s.UpstreamAuthority, s.NodeAttestors)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("Warnings = %q", s.Warnings)
	}
}

func TestServerKeys(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lines string
		check func(t *testing.T, s *Server)
	}{
		{"ok/bind_address and bind_port", `bind_address = "127.0.0.1"
    bind_port = "48081"`, func(t *testing.T, s *Server) {
			if s.BindAddress.String() != "127.0.0.1:48081" {
				t.Errorf("BindAddress = %v", s.BindAddress)
			}
		}},
		{"ok/bind_port as a number", `bind_port = 9000`, func(t *testing.T, s *Server) {
			if s.BindAddress.Port != 9000 {
				t.Errorf("port = %d", s.BindAddress.Port)
			}
		}},
		{"ok/bracketed IPv6 bind_address", `bind_address = "[::1]"`, func(t *testing.T, s *Server) {
			if s.BindAddress.String() != "[::1]:8081" {
				t.Errorf("BindAddress = %v", s.BindAddress)
			}
		}},
		{"ok/relative socket_path made absolute", `socket_path = "./s/api.sock"`, func(t *testing.T, s *Server) {
			want, _ := filepath.Abs("./s/api.sock")
			if s.SocketPath != want {
				t.Errorf("SocketPath = %q, want %q", s.SocketPath, want)
			}
		}},
		{"ok/log_level lower case and json format", `log_level = "debug"
    log_format = "JSON"
    log_file = "/tmp/x.log"
    log_source_location = true`, func(t *testing.T, s *Server) {
			if s.Log.Level.String() != "DEBUG" || s.Log.Format != "json" || s.Log.File != "/tmp/x.log" || !s.Log.SourceLocation {
				t.Errorf("Log = %+v", s.Log)
			}
		}},
		{"ok/log_level warn", `log_level = "WARN"`, func(t *testing.T, s *Server) {
			if s.Log.Level.String() != "WARN" {
				t.Errorf("Level = %v", s.Log.Level)
			}
		}},
		{"ok/ttls", `ca_ttl = "168h"
    default_x509_svid_ttl = "2h"
    default_jwt_svid_ttl = "15m"
    agent_ttl = "3h"`, func(t *testing.T, s *Server) {
			if s.CATTL != 168*time.Hour || s.X509SVIDTTL != 2*time.Hour || s.JWTSVIDTTL != 15*time.Minute || s.AgentTTL != 3*time.Hour {
				t.Errorf("TTLs = %v %v %v %v", s.CATTL, s.X509SVIDTTL, s.JWTSVIDTTL, s.AgentTTL)
			}
			if len(s.Warnings) != 0 {
				t.Errorf("Warnings = %q", s.Warnings)
			}
		}},
		{"ok/ca_key_type sets the jwt key type too", `ca_key_type = "RSA-2048"`, func(t *testing.T, s *Server) {
			if s.CAKeyType != "rsa-2048" || s.JWTKeyType != "rsa-2048" {
				t.Errorf("key types = %q/%q", s.CAKeyType, s.JWTKeyType)
			}
		}},
		{"ok/jwt_key_type", `ca_key_type = "ec-p384"
    jwt_key_type = "rsa-4096"`, func(t *testing.T, s *Server) {
			if s.CAKeyType != "ec-p384" || s.JWTKeyType != "rsa-4096" {
				t.Errorf("key types = %q/%q", s.CAKeyType, s.JWTKeyType)
			}
		}},
		{"ok/ca_subject", `ca_subject {
        country = ["DE"]
        organization = ["Neural Hive"]
        common_name = "hive CA"
    }`, func(t *testing.T, s *Server) {
			want := pkix.Name{Country: []string{"DE"}, Organization: []string{"Neural Hive"}, CommonName: "hive CA"}
			if !reflect.DeepEqual(s.CASubject, want) {
				t.Errorf("CASubject = %v", s.CASubject)
			}
		}},
		{"ok/empty ca_subject keeps the default and warns", `ca_subject {}`, func(t *testing.T, s *Server) {
			if s.CASubject.Organization[0] != "SPIFFE" || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "ca_subject configurable is set but empty") {
				t.Errorf("CASubject = %v, Warnings = %q", s.CASubject, s.Warnings)
			}
		}},
		{"ok/jwt_issuer and admin_ids", `jwt_issuer = "https://oidc.example.org"
    admin_ids = ["spiffe://example.org/admin", "spiffe://other.org/ops"]`, func(t *testing.T, s *Server) {
			if s.JWTIssuer != "https://oidc.example.org" || len(s.AdminIDs) != 2 || s.AdminIDs[1].String() != "spiffe://other.org/ops" {
				t.Errorf("JWTIssuer = %q AdminIDs = %v", s.JWTIssuer, s.AdminIDs)
			}
		}},
		{"ok/ratelimit", `ratelimit {
        attestation = false
        signing = true
    }`, func(t *testing.T, s *Server) {
			if s.RateLimitAttestation || !s.RateLimitSigning {
				t.Errorf("rate limits = %v/%v", s.RateLimitAttestation, s.RateLimitSigning)
			}
		}},
		{"ok/prune", `prune_attested_nodes_expired_for = "24h"
    prune_tofu_nodes = true`, func(t *testing.T, s *Server) {
			if s.PruneAttestedNodesExpiredFor != 24*time.Hour || !s.PruneNonReattestableNodes {
				t.Errorf("prune = %v %v", s.PruneAttestedNodesExpiredFor, s.PruneNonReattestableNodes)
			}
		}},
		{"ok/audit log accepted with a warning", `audit_log_enabled = true`, func(t *testing.T, s *Server) {
			if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "audit_log_enabled") {
				t.Errorf("Warnings = %q", s.Warnings)
			}
		}},
		{"ok/experimental accepted with a warning", `experimental {
        cache_reload_interval = "10s"
        events_based_cache = true
        feature_flags = ["i_am_a_test_flag"]
    }`, func(t *testing.T, s *Server) {
			if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "experimental") {
				t.Errorf("Warnings = %q", s.Warnings)
			}
		}},
		{"ok/federation accepted with a warning", `federation {
        bundle_endpoint {
            address = "0.0.0.0"
            port = 8443
            refresh_hint = "5m"
        }
        federates_with "partner.example" {
            bundle_endpoint_url = "https://partner.example:8443"
            bundle_endpoint_profile "https_web" {}
        }
    }`, func(t *testing.T, s *Server) {
			if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "federation is not supported") {
				t.Errorf("Warnings = %q", s.Warnings)
			}
		}},
		{"ok/profiling accepted with a warning", `profiling_enabled = true
    profiling_port = 6060
    profiling_freq = 10
    profiling_names = ["heap"]`, func(t *testing.T, s *Server) {
			if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "profiling_enabled") {
				t.Errorf("Warnings = %q", s.Warnings)
			}
		}},
		{"ok/svid ttl beyond what the CA can honour warns as SPIRE", `ca_ttl = "1h"
    default_x509_svid_ttl = "2h"`, func(t *testing.T, s *Server) {
			want := "default_x509_svid_ttl is too high for the configured ca_ttl value. SVIDs with shorter lifetimes may be issued. Please set default_x509_svid_ttl to 10m or less, or the ca_ttl to 12h or more, to guarantee the full default_x509_svid_ttl lifetime when CA rotations are scheduled."
			if len(s.Warnings) != 1 || s.Warnings[0] != want {
				t.Errorf("Warnings = %q", s.Warnings)
			}
		}},
		{"ok/svid ttl above the 7 day cap", `ca_ttl = "2400h"
    default_jwt_svid_ttl = "200h"`, func(t *testing.T, s *Server) {
			if len(s.Warnings) != 1 || !strings.HasPrefix(s.Warnings[0], "default_jwt_svid_ttl is too high. ") || !strings.Contains(s.Warnings[0], "to 168h or less") {
				t.Errorf("Warnings = %q", s.Warnings)
			}
		}},
		{"ok/svid ttl above the cap with a short CA", `default_x509_svid_ttl = "200h"`, func(t *testing.T, s *Server) {
			if len(s.Warnings) != 1 || !strings.HasPrefix(s.Warnings[0], "default_x509_svid_ttl is too high and the ca_ttl is too low.") {
				t.Errorf("Warnings = %q", s.Warnings)
			}
		}},
		{"ok/keys match case-insensitively as hcl decodes them", `Trust_Domain = "other.org"`, func(t *testing.T, s *Server) {
			if s.TrustDomain.Name() != "other.org" {
				t.Errorf("TrustDomain = %v", s.TrustDomain)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := checkServer(t, serverConf("    "+tt.lines, "", ""))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			tt.check(t, s)
		})
	}
}

func TestServerProblems(t *testing.T) {
	for _, tt := range []struct {
		name string
		text string
		msg  string // substring of the problem's message
		at   string // first occurrence in text of where it is; "" = the file
		err  string // the *Error's message (SPIRE's line), when checked
	}{
		{name: "fail/unknown key in server", text: serverConf(`    bogus_key = "x"`, "", ""),
			msg: `unknown key "bogus_key" in section server`, at: "bogus_key", err: "unknown configuration detected"},
		{name: "fail/unknown top-level block", text: serverConf("", "", "\nserverr {\n}\n"),
			msg: `unknown key "serverr" in the top level`, at: "serverr"},
		{name: "fail/unknown key in ca_subject", text: serverConf("    ca_subject {\n        org = \"x\"\n    }", "", ""),
			msg: `unknown key "org" in section server.ca_subject`, at: "org ="},
		{name: "fail/unknown key in ratelimit", text: serverConf("    ratelimit {\n        attestations = true\n    }", "", ""),
			msg: `unknown key "attestations"`, at: "attestations"},
		{name: "fail/unknown key in experimental", text: serverConf("    experimental {\n        cache_reload = \"5s\"\n    }", "", ""),
			msg: `unknown key "cache_reload" in section server.experimental`, at: "cache_reload"},
		{name: "fail/unknown key in health_checks", text: serverConf("", "", "health_checks {\n    bind_prot = \"80\"\n}\n"),
			msg: `unknown key "bind_prot" in section health_checks`, at: "bind_prot"},
		{name: "fail/unknown key in telemetry Prometheus", text: serverConf("", "", "telemetry {\n    Prometheus {\n        prot = 9\n    }\n}\n"),
			msg: `unknown key "prot" in section telemetry.Prometheus`, at: "prot"},
		{name: "fail/unknown key in telemetry", text: serverConf("", "", "telemetry {\n    Prometeus {\n        port = 9\n    }\n}\n"),
			msg: `unknown key "Prometeus" in section telemetry`, at: "Prometeus"},
		{name: "fail/unknown key in plugin_data", text: serverConf("", "    KeyManager \"disk\" {\n        plugin_data {\n            key_path = \"/x\"\n        }\n    }", ""),
			msg: `unknown key "key_path" in plugin_data of KeyManager "disk"`, at: "key_path"},
		{name: "fail/unknown key in plugin declaration", text: serverConf("", "    UpstreamAuthority \"disk\" {\n        plugin_dta {}\n    }", ""),
			msg: `unknown key "plugin_dta"`, at: "plugin_dta"},
		{name: "fail/unknown key in federation bundle endpoint", text: serverConf("    federation {\n        bundle_endpoint {\n            adress = \"x\"\n        }\n    }", "", ""),
			msg: `unknown key "adress"`, at: "adress"},

		{name: "fail/missing trust_domain", text: "server {\n    data_dir = \"/d\"\n}\nplugins {}\n",
			msg: "trust_domain must be configured", at: "server", err: "trust_domain must be configured"},
		{name: "fail/missing data_dir", text: "server {\n    trust_domain = \"example.org\"\n}\nplugins {}\n",
			msg: "data_dir must be configured", at: "server"},
		{name: "fail/missing server block", text: "plugins {}\n",
			msg: "trust_domain must be configured", at: ""},
		{name: "fail/missing plugins", text: "server {\n    trust_domain = \"example.org\"\n    data_dir = \"/d\"\n}\n",
			msg: "plugins section must be configured", at: ""},
		{name: "fail/empty bind_address", text: serverConf(`    bind_address = ""`, "", ""),
			msg: "bind_address and bind_port must be configured", at: "bind_address"},
		{name: "fail/unresolvable bind_address", text: serverConf(`    bind_address = "no such host.invalid"`, "", ""),
			msg: `could not resolve bind address "no such host.invalid:8081"`, at: "bind_address"},

		{name: "fail/bad trust domain", text: serverConf(`    trust_domain = "Neural_Hive.Local"`, "", ""),
			msg: `could not parse trust_domain "Neural_Hive.Local": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`,
			at:  `trust_domain = "Neural`},
		{name: "fail/trust domain with a port", text: serverConf(`    trust_domain = "example.org:8080"`, "", ""),
			msg: `could not parse trust_domain "example.org:8080"`, at: `trust_domain = "example.org:`},
		{name: "fail/bad admin id", text: serverConf(`    admin_ids = ["example.org/admin"]`, "", ""),
			msg: `could not parse admin ID "example.org/admin": scheme is missing or invalid`, at: "admin_ids"},

		{name: "fail/bad default_x509_svid_ttl", text: serverConf(`    default_x509_svid_ttl = "forever"`, "", ""),
			msg: `could not parse default X509 SVID ttl "forever": time: invalid duration "forever"`, at: "default_x509_svid_ttl"},
		{name: "fail/duration without a unit", text: serverConf(`    default_jwt_svid_ttl = "300"`, "", ""),
			msg: `could not parse default JWT SVID ttl "300": time: missing unit in duration "300"`, at: "default_jwt_svid_ttl"},
		{name: "fail/bad ca_ttl", text: serverConf(`    ca_ttl = "1 day"`, "", ""),
			msg: `could not parse default CA ttl "1 day"`, at: "ca_ttl"},
		{name: "fail/bad agent_ttl", text: serverConf(`    agent_ttl = "1d"`, "", ""),
			msg: `could not parse agent ttl "1d": time: unknown unit "d" in duration "1d"`, at: "agent_ttl"},
		{name: "fail/negative ttl", text: serverConf(`    default_x509_svid_ttl = "-1h"`, "", ""),
			msg: `default_x509_svid_ttl "-1h" must not be negative`, at: "default_x509_svid_ttl"},
		{name: "fail/bad prune duration", text: serverConf(`    prune_attested_nodes_expired_for = "week"`, "", ""),
			msg: "could not parse prune_attested_nodes_expired_for", at: "prune_attested"},
		{name: "fail/bad experimental interval", text: serverConf("    experimental {\n        cache_reload_interval = \"soon\"\n    }", "", ""),
			msg: "could not parse cache reload interval", at: "cache_reload_interval"},
		{name: "fail/bad max_attested_node_info_staleness", text: serverConf(`    max_attested_node_info_staleness = "x"`, "", ""),
			msg: `could not parse max attested node staleness "x"`, at: "max_attested"},

		{name: "fail/bad ca_key_type", text: serverConf(`    ca_key_type = "ec-p521"`, "", ""),
			msg: `error parsing ca_key_type: key type "ec-p521" is unknown; must be one of [rsa-2048, rsa-4096, ec-p256, ec-p384]`, at: "ca_key_type"},
		{name: "fail/bad jwt_key_type", text: serverConf(`    jwt_key_type = "ed25519"`, "", ""),
			msg: `error parsing jwt_key_type: key type "ed25519" is unknown`, at: "jwt_key_type"},
		{name: "fail/bad log level", text: serverConf(`    log_level = "CHATTY"`, "", ""),
			msg: `could not start logger: not a valid logrus Level: "CHATTY"`, at: "log_level"},
		{name: "fail/bad log format", text: serverConf(`    log_format = "yaml"`, "", ""),
			msg: `could not start logger: unknown logger format: "yaml"`, at: "log_format"},
		{name: "fail/unknown feature flag", text: serverConf("    experimental {\n        feature_flags = [\"warp\"]\n    }", "", ""),
			msg: "error loading feature flags: unknown feature flag(s): [warp]", at: "feature_flags"},
		{name: "fail/named pipe", text: serverConf("    experimental {\n        named_pipe_name = \"\\\\spire\"\n    }", "", ""),
			msg: "named_pipe_name is not supported in this platform", at: "named_pipe_name"},
		{name: "fail/both event timeouts", text: serverConf("    experimental {\n        event_timeout = \"1s\"\n        sql_transaction_timeout = \"1s\"\n    }", "", ""),
			msg: "both experimental sql_transaction_timeout and event_timeout set", at: "sql_transaction_timeout"},
		{name: "fail/federates_with over http", text: serverConf("    federation {\n        federates_with \"p.org\" {\n            bundle_endpoint_url = \"http://p.org\"\n            bundle_endpoint_profile \"https_web\" {}\n        }\n    }", "", ""),
			msg: `federation.federates_with["p.org"].bundle_endpoint_url must use the HTTPS protocol`, at: "bundle_endpoint_url"},
		{name: "fail/acme without email", text: serverConf("    federation {\n        bundle_endpoint {\n            acme {\n                domain_name = \"x.org\"\n            }\n        }\n    }", "", ""),
			msg: "federation.bundle_endpoint.acme.email must be configured", at: "acme"},

		{name: "fail/socket path too long", text: serverConf(`    socket_path = "/tmp/`+strings.Repeat("d", 110)+`/api.sock"`, "", ""),
			msg: "is too long: a unix socket path is limited to 107 bytes", at: `socket_path = "/tmp/ddd`},
		{name: "fail/socket path names a directory", text: serverConf(`    socket_path = "/tmp/hid/"`, "", ""),
			msg: `socket_path "/tmp/hid/" names a directory`, at: `socket_path = "/tmp/hid/"`},

		{name: "fail/health bind_port not a number", text: serverConf("", "", "health_checks {\n    listener_enabled = true\n    bind_port = \"http\"\n}\n"),
			msg: `health_checks bind_port "http" is not a valid port`, at: "bind_port"},
		{name: "fail/health path without slash", text: serverConf("", "", "health_checks {\n    live_path = \"live\"\n}\n"),
			msg: `health_checks live_path "live" must start with /`, at: "live_path"},
		{name: "fail/Prometheus without port", text: serverConf("", "", "telemetry {\n    Prometheus {\n        host = \"127.0.0.1\"\n    }\n}\n"),
			msg: "telemetry Prometheus port must be configured", at: "Prometheus"},
		{name: "fail/Prometheus port out of range", text: serverConf("", "", "telemetry {\n    Prometheus {\n        port = 70000\n    }\n}\n"),
			msg: "telemetry Prometheus port 70000 is not a valid port", at: "port = 70000"},
		{name: "fail/DogStatsd sink refused", text: serverConf("", "", "telemetry {\n    DogStatsd = [\n        { address = \"localhost:8125\" },\n    ]\n}\n"),
			msg: "telemetry sink DogStatsd is not supported", at: "DogStatsd"},

		{name: "fail/unknown plugin type", text: serverConf("", "    Notifer \"k8sbundle\" {\n        plugin_data {}\n    }", ""),
			msg: `unsupported plugin type "Notifer"`, at: "Notifer"},
		{name: "fail/unknown node attestor name", text: serverConf("", "    NodeAttestor \"aws_iid\" {\n        plugin_data {}\n    }", ""),
			msg: `no built-in plugin "aws_iid" for type "NodeAttestor"`, at: `"aws_iid"`},
		{name: "fail/unknown key manager name", text: serverConf("", "    KeyManager \"aws_kms\" {\n        plugin_data {}\n    }", ""),
			msg: `no built-in plugin "aws_kms" for type "KeyManager"`, at: `"aws_kms"`},
		{name: "fail/unknown upstream authority name", text: serverConf("", "    UpstreamAuthority \"vault\" {\n        plugin_data {}\n    }", ""),
			msg: `no built-in plugin "vault" for type "UpstreamAuthority"`, at: `"vault"`},
		{name: "fail/known SPIRE type without built-ins", text: serverConf("", "    Notifier \"k8sbundle\" {\n        plugin_data {}\n    }", ""),
			msg: `no built-in plugin "k8sbundle" for type "Notifier"`, at: `"k8sbundle"`},
		{name: "fail/non-sql datastore", text: strings.Replace(serverConf("", "", ""), `DataStore "sql"`, `DataStore "etcd"`, 1),
			msg: `pluggability for the DataStore is deprecated; only the built-in "sql" plugin is supported`, at: `"etcd"`},
		{name: "fail/external plugin refused", text: serverConf("", "    NodeAttestor \"custom\" {\n        plugin_cmd = \"/opt/plugins/custom\"\n        plugin_checksum = \"abc\"\n    }", ""),
			msg: "external plugins (plugin_cmd) are not supported", at: "plugin_cmd"},
		{name: "fail/plugin declared twice", text: serverConf("", "    NodeAttestor \"join_token\" {\n        plugin_data {}\n    }", ""),
			msg: `plugin "NodeAttestor"/"join_token" declared more than once`, at: "\"join_token\" {\n        plugin_data {}\n    }\n}"},
		{name: "fail/plugin_data and plugin_data_file", text: serverConf("", "    UpstreamAuthority \"disk\" {\n        plugin_data {}\n        plugin_data_file = \"/x\"\n    }", ""),
			msg: "only one of [plugin_data, plugin_data_file] can be used", at: "plugin_data_file"},
		{name: "fail/plugin_data_file missing", text: serverConf("", "    UpstreamAuthority \"disk\" {\n        plugin_data_file = \"/nonexistent/ua.conf\"\n    }", ""),
			msg: "unable to read plugin_data_file", at: "plugin_data_file"},
		{name: "fail/plugin_data not a block", text: serverConf("", "    UpstreamAuthority \"disk\" {\n        plugin_data = \"cert_file_path = x\"\n    }", ""),
			msg: "plugin_data must be a block", at: "plugin_data ="},
		{name: "fail/second key manager", text: serverConf("", "    KeyManager \"disk\" {\n        plugin_data {\n            keys_path = \"/k.json\"\n        }\n    }", ""),
			msg: `plugin type "KeyManager" constraint not satisfied: expected exactly 1 but got 2`, at: `KeyManager "disk"`},

		{name: "fail/bad database_type", text: strings.Replace(serverConf("", "", ""), `"sqlite3"`, `"oracle"`, 1),
			msg: "datastore-sql: unsupported database_type: oracle", at: "database_type"},
		{name: "fail/mysql database_type", text: strings.Replace(serverConf("", "", ""), `"sqlite3"`, `"mysql"`, 1),
			msg: "datastore-sql: unsupported database_type: mysql", at: "database_type"},
		{name: "fail/aws database_type block", text: strings.Replace(serverConf("", "", ""), `database_type = "sqlite3"`, "database_type \"aws_postgres\" {\n                region = \"x\"\n            }", 1),
			msg: "aws_mysql and aws_postgres are not supported", at: "database_type"},
		{name: "fail/missing database_type", text: strings.Replace(serverConf("", "", ""), `database_type = "sqlite3"`, "", 1),
			msg: "datastore-sql: database_type must be set", at: `DataStore "sql"`},
		{name: "fail/missing connection_string", text: strings.Replace(serverConf("", "", ""), `connection_string = "/var/lib/hid/datastore.sqlite3"`, "", 1),
			msg: "datastore-sql: connection_string must be set", at: `DataStore "sql"`},
		{name: "fail/bad conn_max_lifetime", text: strings.Replace(serverConf("", "", ""), `database_type = "sqlite3"`, "database_type = \"sqlite3\"\n            conn_max_lifetime = \"often\"", 1),
			msg: "failed to parse conn_max_lifetime", at: "conn_max_lifetime"},
		{name: "fail/disk key manager without keys_path", text: strings.Replace(serverConf("", "", ""), `KeyManager "memory"`, `KeyManager "disk"`, 1),
			msg: `plugin KeyManager "disk": keys_path is required`, at: `KeyManager "disk"`},
		{name: "fail/disk upstream without files", text: serverConf("", "    UpstreamAuthority \"disk\" {\n        plugin_data {\n            bundle_file_path = \"/b.pem\"\n        }\n    }", ""),
			msg: "cert_file_path is required", at: `UpstreamAuthority "disk"`},
		{name: "fail/x509pop without a CA bundle", text: serverConf("", "    NodeAttestor \"x509pop\" {\n        plugin_data {}\n    }", ""),
			msg: "one of ca_bundle_path or ca_bundle_paths must be configured", at: `NodeAttestor "x509pop"`},
		{name: "fail/x509pop with both bundle keys", text: serverConf("", "    NodeAttestor \"x509pop\" {\n        plugin_data {\n            ca_bundle_path = \"/a.pem\"\n            ca_bundle_paths = [\"/b.pem\"]\n        }\n    }", ""),
			msg: "only one of ca_bundle_path or ca_bundle_paths can be configured, not both", at: "ca_bundle_paths"},
		{name: "fail/x509pop bad mode", text: serverConf("", "    NodeAttestor \"x509pop\" {\n        plugin_data {\n            mode = \"pki\"\n            ca_bundle_path = \"/a.pem\"\n        }\n    }", ""),
			msg: "mode can only be either spiffe or external_pki", at: "mode ="},
		{name: "fail/x509pop bundle in spiffe mode", text: serverConf("", "    NodeAttestor \"x509pop\" {\n        plugin_data {\n            mode = \"spiffe\"\n            ca_bundle_path = \"/a.pem\"\n        }\n    }", ""),
			msg: "you can not use ca_bundle_path or ca_bundle_paths in spiffe mode", at: "ca_bundle_path"},
		{name: "fail/x509pop bad template", text: serverConf("", "    NodeAttestor \"x509pop\" {\n        plugin_data {\n            ca_bundle_path = \"/a.pem\"\n            agent_path_template = \"/{{ .Subject.CommonName \"\n        }\n    }", ""),
			msg: "failed to parse agent svid template", at: "agent_path_template"},
		{name: "fail/join_token with data", text: strings.Replace(serverConf("", "", ""), "NodeAttestor \"join_token\" {\n        plugin_data {}", "NodeAttestor \"join_token\" {\n        plugin_data {\n            ttl = \"1h\"\n        }", 1),
			msg: `unknown key "ttl" in plugin_data of NodeAttestor "join_token"`, at: "ttl ="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkServer(t, tt.text)
			wantProblem(t, err, serverName, tt.text, tt.msg, tt.at)
			if tt.err != "" && err.Error() != tt.err {
				t.Fatalf("Error() = %q, want %q", err.Error(), tt.err)
			}
		})
	}
}

func TestServerDecodeErrors(t *testing.T) {
	for _, tt := range []struct {
		name, text, want string
	}{
		{"fail/syntax", "server {\n    bind_port = \"1\"\n    oops = \n    bind_address = \"x\"\n}\n", "At 4:5: Unknown token: 4:5 IDENT bind_address"},
		{"fail/bind_port not a number", "server {\n    bind_port = \"http\"\n}\n", `strconv.ParseInt: parsing "http": invalid syntax`},
		{"fail/block where a string belongs", "server {\n    trust_domain {\n        a = 1\n    }\n}\n", "At 3:9: root.server.trust_domain: unknown type for string *ast.ObjectList"},
		{"fail/empty block where a string belongs does not crash", "server {\n    trust_domain {\n    }\n}\n", "malformed configuration: runtime error: index out of range [0] with length 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseServer(serverName, tt.text)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("ParseServer error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestServerAllProblems checks that Check reports every problem, not just the
// first, in SPIRE's check order, each with its location.
func TestServerAllProblems(t *testing.T) {
	text := `server {
    bind_port = "8081"
    data_dir = "/d"
    bogus = 1
    default_x509_svid_ttl = "forever"
    ca_key_type = "dsa"
    log_level = "loud"
    ca_subject {
        organisation = ["x"]
    }
}

plugins {
    KeyManager "hsm" {
        plugin_data {}
    }
    NodeAttestor "x509pop" {
        plugin_data {
            ca_bundle = "/x"
        }
    }
}

health_checks {
    bind_port = "-"
}
`
	_, err := checkServer(t, text)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"server.conf:1:1: trust_domain must be configured",
		`server.conf:7:5: could not start logger: not a valid logrus Level: "loud"`,
		`server.conf:5:5: could not parse default X509 SVID ttl "forever": time: invalid duration "forever"`,
		`server.conf:6:5: error parsing ca_key_type: key type "dsa" is unknown; must be one of [rsa-2048, rsa-4096, ec-p256, ec-p384]`,
		`server.conf:4:5: unknown key "bogus" in section server`,
		`server.conf:9:9: unknown key "organisation" in section server.ca_subject`,
		`server.conf:14:16: no built-in plugin "hsm" for type "KeyManager" (available: disk, memory)`,
		`server.conf:19:13: unknown key "ca_bundle" in plugin_data of NodeAttestor "x509pop"`,
		`server.conf:17:5: plugin NodeAttestor "x509pop": one of ca_bundle_path or ca_bundle_paths must be configured`,
		`server.conf:25:5: health_checks bind_port "-" is not a valid port`,
	}
	if got := ce.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err.Error() != "trust_domain must be configured" {
		t.Fatalf("Error() = %q", err.Error())
	}
	groups := ce.UnknownKeys()
	if len(groups) != 3 || groups[0].Section != "server" || groups[1].Section != "ca_subject" || groups[2].Section != `plugin_data of NodeAttestor "x509pop"` {
		t.Fatalf("UnknownKeys = %+v", groups)
	}
}

func TestServerPlugins(t *testing.T) {
	dir := t.TempDir()
	dataFile := filepath.Join(dir, "ua.conf")
	if err := os.WriteFile(dataFile, []byte("cert_file_path = \"/ca/cert.pem\"\nkey_file_path = \"/ca/key.pem\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badDataFile := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(badDataFile, []byte("cert_file_path = \"/c\"\nkey_file_path = \"/k\"\n\ncrt = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := checkServer(t, `server {
    trust_domain = "example.org"
    data_dir = "/d"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "postgres"
            connection_string = "postgres://spire@db:5432/spire?sslmode=disable"
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = "/d/keys.json"
        }
    }
    UpstreamAuthority "disk" {
        plugin_data {
            cert_file_path = "/ca/cert.pem"
            key_file_path = "/ca/key.pem"
            bundle_file_path = "/ca/bundle.pem"
        }
    }
    NodeAttestor {
        join_token {
            plugin_data {}
        }
    }
    NodeAttestor "x509pop" {
        plugin_data {
            ca_bundle_paths = ["/ca/a.pem", "/ca/b.pem"]
            agent_path_template = "/x509pop/{{ .Subject.CommonName }}"
        }
    }
    NodeAttestor "disabled_one" {
        enabled = false
    }
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if want := (DataStore{DatabaseType: "postgres", ConnectionString: "postgres://spire@db:5432/spire?sslmode=disable"}); *s.DataStore != want {
		t.Errorf("DataStore = %+v", s.DataStore)
	}
	if want := (ServerKeyManager{Kind: "disk", KeysPath: "/d/keys.json"}); *s.KeyManager != want {
		t.Errorf("KeyManager = %+v", s.KeyManager)
	}
	if want := (UpstreamDisk{CertFilePath: "/ca/cert.pem", KeyFilePath: "/ca/key.pem", BundleFilePath: "/ca/bundle.pem"}); *s.UpstreamAuthority != want {
		t.Errorf("UpstreamAuthority = %+v", s.UpstreamAuthority)
	}
	wantNA := []ServerNodeAttestor{
		{Name: "join_token"},
		{Name: "x509pop", X509PoP: &ServerX509PoP{Mode: "external_pki", CABundlePaths: []string{"/ca/a.pem", "/ca/b.pem"},
			AgentPathTemplate: "/x509pop/{{ .Subject.CommonName }}", SPIFFEPrefix: "/spire-exchange/"}},
	}
	if !reflect.DeepEqual(s.NodeAttestors, wantNA) {
		t.Errorf("NodeAttestors = %+v", s.NodeAttestors)
	}

	t.Run("ok/plugin_data_file", func(t *testing.T) {
		s, err := checkServer(t, serverConf("", "    UpstreamAuthority \"disk\" {\n        plugin_data_file = \""+dataFile+"\"\n    }", ""))
		if err != nil {
			t.Fatal(err)
		}
		if s.UpstreamAuthority == nil || s.UpstreamAuthority.KeyFilePath != "/ca/key.pem" {
			t.Fatalf("UpstreamAuthority = %+v", s.UpstreamAuthority)
		}
	})
	t.Run("fail/unknown key in plugin_data_file is located in that file", func(t *testing.T) {
		_, err := checkServer(t, serverConf("", "    UpstreamAuthority \"disk\" {\n        plugin_data_file = \""+badDataFile+"\"\n    }", ""))
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].String() != badDataFile+`:4:1: unknown key "crt" in plugin_data of UpstreamAuthority "disk"` {
			t.Fatalf("err = %v (%+v)", err, ce)
		}
	})
	t.Run("ok/x509pop single bundle, spiffe prefix", func(t *testing.T) {
		s, err := checkServer(t, serverConf("", "    NodeAttestor \"x509pop\" {\n        plugin_data {\n            ca_bundle_path = \"/ca/a.pem\"\n            spiffe_prefix = \"/agents\"\n        }\n    }", ""))
		if err != nil {
			t.Fatal(err)
		}
		x := s.NodeAttestors[1].X509PoP
		if !reflect.DeepEqual(x.CABundlePaths, []string{"/ca/a.pem"}) || x.SPIFFEPrefix != "/agents/" {
			t.Fatalf("x509pop = %+v", x)
		}
	})
	t.Run("ok/x509pop spiffe mode", func(t *testing.T) {
		s, err := checkServer(t, serverConf("", "    NodeAttestor \"x509pop\" {\n        plugin_data {\n            mode = \"spiffe\"\n        }\n    }", ""))
		if err != nil {
			t.Fatal(err)
		}
		if x := s.NodeAttestors[1].X509PoP; x.Mode != "spiffe" || len(x.CABundlePaths) != 0 {
			t.Fatalf("x509pop = %+v", x)
		}
	})
	t.Run("ok/plugin declared on one line", func(t *testing.T) {
		s, err := checkServer(t, serverConf("", "    UpstreamAuthority \"disk\" plugin_data {\n        cert_file_path = \"/c\"\n        key_file_path = \"/k\"\n    }", ""))
		if err != nil {
			t.Fatal(err)
		}
		if s.UpstreamAuthority == nil || s.UpstreamAuthority.CertFilePath != "/c" {
			t.Fatalf("UpstreamAuthority = %+v", s.UpstreamAuthority)
		}
	})
	t.Run("ok/unsupported sql keys warn", func(t *testing.T) {
		s, err := checkServer(t, strings.Replace(serverConf("", "", ""), `database_type = "sqlite3"`, "database_type = \"sqlite3\"\n            max_open_conns = 10", 1))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "max_open_conns") {
			t.Fatalf("Warnings = %q", s.Warnings)
		}
	})
}

func TestServerHealthAndTelemetry(t *testing.T) {
	s, err := checkServer(t, serverConf("", "", `health_checks {
    listener_enabled = true
    bind_address = "127.0.0.1"
    bind_port = 8080
    live_path = "/livez"
    ready_path = "/readyz"
}

telemetry {
    Prometheus {
        port = 9988
    }
    InMem {}
    MetricPrefix = "hive"
    EnableHostnameLabel = false
    EnableTrustDomainLabel = true
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (HealthChecks{ListenerEnabled: true, BindAddress: "127.0.0.1", BindPort: 8080, LivePath: "/livez", ReadyPath: "/readyz"}); s.HealthChecks != want {
		t.Errorf("HealthChecks = %+v", s.HealthChecks)
	}
	want := Telemetry{PrometheusEnabled: true, PrometheusHost: "localhost", PrometheusPort: 9988, MetricPrefix: "hive", EnableTrustDomainLabel: true}
	if s.Telemetry != want {
		t.Errorf("Telemetry = %+v, want %+v", s.Telemetry, want)
	}
}

func TestServerOverride(t *testing.T) {
	text := serverConf(`    bind_address = "127.0.0.1"
    bind_port = "8081"
    log_level = "INFO"`, "", "")
	for _, tt := range []struct {
		name  string
		o     ServerOverrides
		check func(t *testing.T, s *Server)
	}{
		{"ok/no flags keep the file", ServerOverrides{}, func(t *testing.T, s *Server) {
			if s.BindAddress.String() != "127.0.0.1:8081" || s.TrustDomain.Name() != "example.org" || s.Log.Level.String() != "INFO" {
				t.Errorf("got %v %v %v", s.BindAddress, s.TrustDomain, s.Log.Level)
			}
		}},
		{"ok/flags win over the file", ServerOverrides{
			BindAddress: "127.0.0.2", BindPort: 9081, SocketPath: "/tmp/hid-o/api.sock", TrustDomain: "flag.example",
			DataDir: "/flag/data", LogFile: "/tmp/f.log", LogFormat: "json", LogLevel: "debug", LogSourceLocation: true,
		}, func(t *testing.T, s *Server) {
			if s.BindAddress.String() != "127.0.0.2:9081" || s.SocketPath != "/tmp/hid-o/api.sock" || s.TrustDomain.Name() != "flag.example" ||
				s.DataDir != "/flag/data" || s.Log.File != "/tmp/f.log" || s.Log.Format != "json" || s.Log.Level.String() != "DEBUG" || !s.Log.SourceLocation {
				t.Errorf("got %+v", s)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseServer(serverName, text)
			if err != nil {
				t.Fatal(err)
			}
			f.Override(tt.o)
			s, err := f.Check()
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}

	t.Run("fail/a bad flag value is located at the flag", func(t *testing.T) {
		f, err := ParseServer(serverName, text)
		if err != nil {
			t.Fatal(err)
		}
		f.Override(ServerOverrides{TrustDomain: "Bad TD"})
		_, err = f.Check()
		wantProblem(t, err, serverName, text, `could not parse trust_domain "Bad TD"`, "flag -trustDomain")
	})
	t.Run("ok/flags fill a file without a server block", func(t *testing.T) {
		f, err := ParseServer(serverName, "plugins {}\n")
		if err != nil {
			t.Fatal(err)
		}
		f.Override(ServerOverrides{TrustDomain: "example.org", DataDir: "/d"})
		if _, err := f.Check(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLoadServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.conf")
	text := serverConf(`    bind_port = "${HID_PORT}"`, "", "")
	text = strings.Replace(text, `trust_domain = "example.org"`, `trust_domain = "$HID_TD"`, 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HID_TD": "env.example", "HID_PORT": "7081"}

	t.Run("ok/expandEnv", func(t *testing.T) {
		f, err := LoadServer(path, LoadOptions{ExpandEnv: true, Getenv: func(k string) string { return env[k] }})
		if err != nil {
			t.Fatal(err)
		}
		s, err := f.Check()
		if err != nil {
			t.Fatal(err)
		}
		if s.TrustDomain.Name() != "env.example" || s.BindAddress.Port != 7081 {
			t.Fatalf("got %v %v", s.TrustDomain, s.BindAddress)
		}
	})
	t.Run("fail/without expandEnv the variables stay", func(t *testing.T) {
		_, err := LoadServer(path, LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), `parsing "${HID_PORT}"`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nosuch.conf")
		_, err := LoadServer(missing, LoadOptions{})
		if want := "could not find config file " + missing + ": please use the -config flag"; err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
	t.Run("fail/default path resolved against the working directory", func(t *testing.T) {
		t.Chdir(dir)
		_, err := LoadServer("", LoadOptions{})
		if want := "could not find config file " + filepath.Join(dir, "conf/server/server.conf") + ": please use the -config flag"; err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
	t.Run("fail/syntax error names the file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.conf")
		if err := os.WriteFile(bad, []byte("server {\n    oops = \n    x = 1\n}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadServer(bad, LoadOptions{})
		if want := `unable to decode configuration at "` + bad + `": At 3:5: Unknown token: 3:5 IDENT x`; err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
	t.Run("fail/unreadable path", func(t *testing.T) {
		_, err := LoadServer(dir, LoadOptions{})
		if err == nil || !strings.HasPrefix(err.Error(), `unable to read configuration at "`+dir+`"`) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestServerReferenceConfigs checks the configurations SPIRE 1.13.3 was run
// with (spire-reference): the same verdict and the same first message.
func TestServerReferenceConfigs(t *testing.T) {
	for _, tt := range []struct {
		file string
		err  string // "" valid
		at   string
	}{
		{file: "config/server.conf"},
		{file: "outputs/inputs/configs/server-no-datastore.conf"},
		{file: "outputs/inputs/configs/server-svid-ttl-exceeds-ca.conf"},
		{file: "outputs/inputs/configs/server-unknown-key.conf", err: "unknown configuration detected", at: ":6:5"},
		{file: "outputs/inputs/configs/server-missing-trust-domain.conf", err: "trust_domain must be configured", at: ":1:1"},
		{file: "outputs/inputs/configs/server-bad-ca-key-type.conf", err: `error parsing ca_key_type: key type "ec-p521" is unknown; must be one of [rsa-2048, rsa-4096, ec-p256, ec-p384]`, at: ":9:5"},
		{file: "outputs/inputs/configs/server-bad-ttl.conf", err: `could not parse default X509 SVID ttl "forever": time: invalid duration "forever"`, at: ":9:5"},
		{file: "outputs/inputs/configs/server-bad-trust-domain.conf", err: `could not parse trust_domain "Neural_Hive.Local": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`, at: ":5:5"},
		{file: "outputs/inputs/configs/server-bad-log-level.conf", err: `could not start logger: not a valid logrus Level: "CHATTY"`, at: ":7:5"},
	} {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			wantReferenceVerdict(t, ParseServer, tt.file, tt.err, tt.at)
		})
	}
}

func TestServerFileBuiltInCode(t *testing.T) {
	f := &ServerFile{Server: &ServerBlock{TrustDomain: "example.org", DataDir: "/d"}}
	f.Override(ServerOverrides{BindPort: 9000})
	_, err := f.Check()
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Message != "plugins section must be configured" {
		t.Fatalf("err = %v", err)
	}
	a := &AgentFile{}
	if _, err := a.Check(); err == nil {
		t.Fatal("an empty agent file passed")
	}
}

func TestServerK8sPSAT(t *testing.T) {
	text := serverConf("", `    NodeAttestor "k8s_psat" {
        plugin_data {
            clusters = {
                "prod" = {
                    service_account_allow_list = ["spire-system:spire-agent"]
                    audience = []
                    allowed_node_label_keys = ["topology.kubernetes.io/zone"]
                }
                "dev" = {
                    service_account_allow_list = ["spire:agent"]
                    kube_config_file = "/etc/kube/dev.conf"
                    allowed_pod_label_keys = ["app"]
                }
            }
        }
    }`, "")
	s, err := checkServer(t, text)
	if err != nil {
		t.Fatal(err)
	}
	want := &ServerK8sPSAT{Clusters: map[string]K8sPSATCluster{
		"prod": {ServiceAccountAllowList: []string{"spire-system:spire-agent"}, Audience: []string{}, AllowedNodeLabelKeys: []string{"topology.kubernetes.io/zone"}},
		"dev":  {ServiceAccountAllowList: []string{"spire:agent"}, KubeConfigFile: "/etc/kube/dev.conf", AllowedPodLabelKeys: []string{"app"}},
	}}
	if got := s.NodeAttestors[1]; got.Name != "k8s_psat" || !reflect.DeepEqual(got.K8sPSAT, want) {
		t.Fatalf("k8s_psat = %+v, want %+v", got.K8sPSAT, want)
	}
	if s.NodeAttestors[1].K8sPSAT.Clusters["dev"].Audience != nil {
		t.Fatal("an absent audience must stay nil (the default)")
	}

	for _, tt := range []struct {
		name, data, msg, at string
	}{
		{"fail/cluster without service accounts", `clusters = {
                "prod" = {
                    audience = ["spire-server"]
                }
            }`, `cluster "prod" configuration must have at least one service account allowed`, `"prod"`},
		{"fail/service account without namespace", `clusters = {
                "prod" = {
                    service_account_allow_list = ["spire-agent"]
                }
            }`, `service account "spire-agent" must be formatted as namespace:name`, "service_account_allow_list"},
		{"fail/unknown cluster key", `clusters = {
                "prod" = {
                    service_account_allow_list = ["a:b"]
                    audiences = ["x"]
                }
            }`, `unknown key "audiences" in plugin_data of NodeAttestor "k8s_psat"`, "audiences"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := serverConf("", "    NodeAttestor \"k8s_psat\" {\n        plugin_data {\n            "+tt.data+"\n        }\n    }", "")
			_, err := checkServer(t, text)
			wantProblem(t, err, serverName, text, tt.msg, tt.at)
		})
	}
	t.Run("ok/no clusters warns", func(t *testing.T) {
		s, err := checkServer(t, serverConf("", "    NodeAttestor \"k8s_psat\" {\n        plugin_data {}\n    }", ""))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "effectively disabled") {
			t.Fatalf("Warnings = %q", s.Warnings)
		}
	})
}
