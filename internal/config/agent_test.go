package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const agentName = "agent.conf"

// agentConf is a valid agent.conf with agentExtra inside the agent block,
// pluginsExtra inside the plugins block and topExtra after both.
func agentConf(agentExtra, pluginsExtra, topExtra string) string {
	return `agent {
    trust_domain = "example.org"
    server_address = "127.0.0.1"
    server_port = "8081"
    trust_bundle_path = "/etc/hid/bootstrap.pem"
    socket_path = "/tmp/hid-agent/api.sock"
` + agentExtra + `
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
` + pluginsExtra + `
}
` + topExtra
}

func checkAgent(t *testing.T, text string) (*Agent, error) {
	t.Helper()
	return parseText(t, ParseAgent, agentName, text).Check()
}

func TestAgentDefaults(t *testing.T) {
	a, err := checkAgent(t, `agent {
    trust_domain = "example.org"
    server_address = "spire-server"
    server_port = 8081
    insecure_bootstrap = true
}
plugins {}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Agent{
		TrustDomain:             a.TrustDomain,
		ServerAddress:           "spire-server",
		ServerPort:              8081,
		TrustBundleFormat:       "pem",
		InsecureBootstrap:       true,
		RetryBootstrap:          true,
		RebootstrapMode:         "never",
		RebootstrapDelay:        10 * time.Minute,
		DataDir:                 ".",
		SocketPath:              "/tmp/spire-agent/public/api.sock",
		Log:                     Log{Level: 0, Format: "text"},
		SyncInterval:            5 * time.Second,
		WorkloadX509SVIDKeyType: "ec-p256",
		X509SVIDCacheMaxSize:    1000,
		JWTSVIDCacheMaxSize:     1000,
		SDS:                     SDS{DefaultSVIDName: "default", DefaultBundleName: "ROOTCA", DefaultAllBundlesName: "ALL"},
		HealthChecks:            HealthChecks{BindAddress: "localhost", BindPort: 80, LivePath: "/live", ReadyPath: "/ready"},
		Telemetry:               Telemetry{EnableHostnameLabel: true},
	}
	if a.TrustDomain.Name() != "example.org" {
		t.Errorf("TrustDomain = %v", a.TrustDomain)
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got  %+v\nwant %+v", a, want)
	}
}

func TestAgentKeys(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		lines string
		check func(t *testing.T, a *Agent)
	}{
		{"ok/runbook agent", `data_dir = "/var/lib/spire-agent"
    log_level = "DEBUG"
    log_format = "json"
    socket_path = "/run/spire/sockets/agent.sock"
    admin_socket_path = "/run/spire/admin/admin.sock"
    trust_bundle_format = "spiffe"
    join_token = "1f67edb1-3c09-4ccf-87de-76c438c67842"`, func(t *testing.T, a *Agent) {
			if a.DataDir != "/var/lib/spire-agent" || a.Log.Level.String() != "DEBUG" || a.Log.Format != "json" ||
				a.SocketPath != "/run/spire/sockets/agent.sock" || a.AdminSocketPath != "/run/spire/admin/admin.sock" ||
				a.TrustBundleFormat != "spiffe" || a.JoinToken != "1f67edb1-3c09-4ccf-87de-76c438c67842" ||
				a.TrustBundlePath != "/etc/hid/bootstrap.pem" || a.ServerAddress != "127.0.0.1" || a.ServerPort != 8081 {
				t.Errorf("got %+v", a)
			}
		}},
		{"ok/join_token_file is read and trimmed", `join_token_file = "` + tokenFile + `"`, func(t *testing.T, a *Agent) {
			if a.JoinToken != "tok-from-file" {
				t.Errorf("JoinToken = %q", a.JoinToken)
			}
		}},
		{"ok/relative socket made absolute", `socket_path = "./a/api.sock"`, func(t *testing.T, a *Agent) {
			want, _ := filepath.Abs("./a/api.sock")
			if a.SocketPath != want {
				t.Errorf("SocketPath = %q", a.SocketPath)
			}
		}},
		{"ok/sync interval, caches, key type, availability", `experimental {
        sync_interval = "1s"
    }
    x509_svid_cache_max_size = 50
    jwt_svid_cache_max_size = 60
    workload_x509_svid_key_type = "rsa-2048"
    availability_target = "48h"
    allow_unauthenticated_verifiers = true
    allowed_foreign_jwt_claims = ["email"]
    authorized_delegates = ["spiffe://example.org/delegate"]`, func(t *testing.T, a *Agent) {
			if a.SyncInterval != time.Second || a.X509SVIDCacheMaxSize != 50 || a.JWTSVIDCacheMaxSize != 60 ||
				a.WorkloadX509SVIDKeyType != "rsa-2048" || a.AvailabilityTarget != 48*time.Hour || !a.AllowUnauthenticatedVerifiers ||
				!reflect.DeepEqual(a.AllowedForeignJWTClaims, []string{"email"}) || len(a.AuthorizedDelegates) != 1 {
				t.Errorf("got %+v", a)
			}
		}},
		{"ok/rebootstrap", `rebootstrap_mode = "auto"
    rebootstrap_delay = "1m"`, func(t *testing.T, a *Agent) {
			if a.RebootstrapMode != "auto" || a.RebootstrapDelay != time.Minute {
				t.Errorf("got %q %v", a.RebootstrapMode, a.RebootstrapDelay)
			}
		}},
		{"ok/retry_bootstrap is deprecated", `retry_bootstrap = false`, func(t *testing.T, a *Agent) {
			if a.RetryBootstrap || len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "retry_bootstrap' configuration is deprecated") {
				t.Errorf("RetryBootstrap = %v, Warnings = %q", a.RetryBootstrap, a.Warnings)
			}
		}},
		{"ok/sds", `sds {
        default_svid_name = "svid"
        default_bundle_name = "bundle"
        default_all_bundles_name = "all"
        disable_spiffe_cert_validation = true
    }`, func(t *testing.T, a *Agent) {
			if a.SDS != (SDS{DefaultSVIDName: "svid", DefaultBundleName: "bundle", DefaultAllBundlesName: "all", DisableSPIFFECertValidation: true}) {
				t.Errorf("SDS = %+v", a.SDS)
			}
		}},
		{"ok/sds same bundle names warns", `sds {
        default_bundle_name = "ALL"
    }`, func(t *testing.T, a *Agent) {
			if len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], `"default_all_bundles_name" will be ignored`) {
				t.Errorf("Warnings = %q", a.Warnings)
			}
		}},
		{"ok/trust bundle url over a unix socket", `trust_bundle_path = ""
    trust_bundle_url = "http://localhost/bundle"
    trust_bundle_unix_socket = "/run/bundle.sock"`, func(t *testing.T, a *Agent) {
			if a.TrustBundleURL != "http://localhost/bundle" || a.TrustBundleUnixSocket != "/run/bundle.sock" || a.TrustBundlePath != "" {
				t.Errorf("got %+v", a)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := checkAgent(t, agentConf("    "+tt.lines, "", ""))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			tt.check(t, a)
		})
	}
}

func TestAgentPlugins(t *testing.T) {
	a, err := checkAgent(t, `agent {
    trust_domain = "example.org"
    server_address = "127.0.0.1"
    server_port = 8081
    insecure_bootstrap = true
}
plugins {
    NodeAttestor "x509pop" {
        plugin_data {
            private_key_path = "/etc/hid/agent.key"
            certificate_path = "/etc/hid/agent.pem"
            intermediates_path = "/etc/hid/intermediates.pem"
        }
    }
    KeyManager "disk" {
        plugin_data {
            directory = "/var/lib/spire-agent"
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
            workload_size_limit = 1048576
        }
    }
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if want := (AgentNodeAttestor{Name: "x509pop", X509PoP: &AgentX509PoP{PrivateKeyPath: "/etc/hid/agent.key", CertificatePath: "/etc/hid/agent.pem", IntermediatesPath: "/etc/hid/intermediates.pem"}}); !reflect.DeepEqual(a.NodeAttestor, want) {
		t.Errorf("NodeAttestor = %+v", a.NodeAttestor)
	}
	if want := (AgentKeyManager{Kind: "disk", Directory: "/var/lib/spire-agent"}); a.KeyManager != want {
		t.Errorf("KeyManager = %+v", a.KeyManager)
	}
	if want := (WorkloadAttestorUnix{DiscoverWorkloadPath: true, WorkloadSizeLimit: 1 << 20}); a.WorkloadAttestorUnix == nil || *a.WorkloadAttestorUnix != want {
		t.Errorf("WorkloadAttestorUnix = %+v", a.WorkloadAttestorUnix)
	}

	t.Run("ok/join_token and memory, no workload attestor", func(t *testing.T) {
		a, err := checkAgent(t, agentConf("", "", ""))
		if err != nil {
			t.Fatal(err)
		}
		if a.NodeAttestor != (AgentNodeAttestor{Name: "join_token"}) || a.KeyManager != (AgentKeyManager{Kind: "memory"}) || a.WorkloadAttestorUnix != nil {
			t.Errorf("got %+v %+v %+v", a.NodeAttestor, a.KeyManager, a.WorkloadAttestorUnix)
		}
	})
}

func TestAgentProblems(t *testing.T) {
	for _, tt := range []struct {
		name, text, msg, at, err string
	}{
		{name: "fail/unknown key in agent", text: agentConf(`    bogus_key = "x"`, "", ""),
			msg: `unknown key "bogus_key" in section agent`, at: "bogus_key", err: "unknown configuration detected"},
		{name: "fail/sync_interval at the top level of agent", text: agentConf(`    sync_interval = "5s"`, "", ""),
			msg: `unknown key "sync_interval" in section agent`, at: "sync_interval"},
		{name: "fail/unknown key in sds", text: agentConf("    sds {\n        svid_name = \"x\"\n    }", "", ""),
			msg: `unknown key "svid_name" in section agent.sds`, at: "svid_name"},
		{name: "fail/unknown key in plugin_data", text: agentConf("", "    WorkloadAttestor \"unix\" {\n        plugin_data {\n            discover_path = true\n        }\n    }", ""),
			msg: `unknown key "discover_path" in plugin_data of WorkloadAttestor "unix"`, at: "discover_path"},
		{name: "fail/missing trust_domain", text: strings.Replace(agentConf("", "", ""), `trust_domain = "example.org"`, "", 1),
			msg: "trust_domain must be configured", at: "agent", err: "trust_domain must be configured"},
		{name: "fail/missing server_address", text: strings.Replace(agentConf("", "", ""), `server_address = "127.0.0.1"`, "", 1),
			msg: "server_address must be configured", at: "agent"},
		{name: "fail/missing server_port", text: strings.Replace(agentConf("", "", ""), `server_port = "8081"`, "", 1),
			msg: "server_port must be configured", at: "agent"},
		{name: "fail/server_port out of range", text: strings.Replace(agentConf("", "", ""), `server_port = "8081"`, `server_port = 80810`, 1),
			msg: "server_port 80810 is not a valid port", at: "server_port"},
		{name: "fail/missing plugins", text: "agent {\n    trust_domain = \"example.org\"\n    server_address = \"a\"\n    server_port = 1\n    insecure_bootstrap = true\n}\n",
			msg: "plugins section must be configured", at: ""},
		{name: "fail/missing trust bundle", text: strings.Replace(agentConf("", "", ""), `trust_bundle_path = "/etc/hid/bootstrap.pem"`, "", 1),
			msg: "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set", at: "agent",
			err: "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set"},
		{name: "fail/insecure_bootstrap with a bundle", text: agentConf(`    insecure_bootstrap = true`, "", ""),
			msg: "only one of insecure_bootstrap or trust_bundle_path can be specified, not both", at: "insecure_bootstrap"},
		{name: "fail/bundle path and url", text: agentConf(`    trust_bundle_url = "https://x/b"`, "", ""),
			msg: "only one of trust_bundle_url or trust_bundle_path can be specified, not both", at: "trust_bundle_url"},
		{name: "fail/bundle url over http", text: strings.Replace(agentConf("", "", ""), `trust_bundle_path = "/etc/hid/bootstrap.pem"`, `trust_bundle_url = "http://x/b"`, 1),
			msg: "trust bundle URL must start with https://", at: "trust_bundle_url"},
		{name: "fail/unix socket without url", text: agentConf(`    trust_bundle_unix_socket = "/run/b.sock"`, "", ""),
			msg: "if trust_bundle_unix_socket is specified, so must be trust_bundle_url", at: "trust_bundle_unix_socket"},
		{name: "fail/bad bundle format", text: agentConf(`    trust_bundle_format = "der"`, "", ""),
			msg: `invalid value for trust_bundle_format, expected "pem" or "spiffe"`, at: "trust_bundle_format"},
		{name: "fail/join_token and join_token_file", text: agentConf("    join_token = \"a\"\n    join_token_file = \"/t\"", "", ""),
			msg: "only one of join_token or join_token_file can be specified, not both", at: "join_token_file"},
		{name: "fail/join_token_file missing", text: agentConf(`    join_token_file = "/nonexistent/token"`, "", ""),
			msg: `unable to read join token file "/nonexistent/token"`, at: "join_token_file"},
		{name: "fail/bad trust domain", text: strings.Replace(agentConf("", "", ""), `"example.org"`, `"Example.ORG"`, 1),
			msg: `could not parse trust_domain "Example.ORG": trust domain characters are limited`, at: "trust_domain"},
		{name: "fail/admin socket next to the workload socket", text: agentConf(`    admin_socket_path = "/tmp/hid-agent/admin.sock"`, "", ""),
			msg: "admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket", at: "admin_socket_path"},
		{name: "fail/admin socket below the workload socket dir", text: agentConf(`    admin_socket_path = "/tmp/hid-agent/admin/admin.sock"`, "", ""),
			msg: "admin socket cannot be in the same directory", at: "admin_socket_path"},
		{name: "fail/socket path too long", text: agentConf(`    socket_path = "/run/`+strings.Repeat("s", 120)+`.sock"`, "", ""),
			msg: "is too long", at: `socket_path = "/run/sss`},
		{name: "fail/bad rebootstrap mode", text: agentConf(`    rebootstrap_mode = "sometimes"`, "", ""),
			msg: "unknown rebootstrap mode specified: sometimes", at: "rebootstrap_mode"},
		{name: "fail/rebootstrap with retry_bootstrap", text: agentConf("    rebootstrap_mode = \"always\"\n    retry_bootstrap = true", "", ""),
			msg: "you can not set retry_bootstrap when using reboostrap_mode", at: "retry_bootstrap"},
		{name: "fail/bad rebootstrap delay", text: agentConf(`    rebootstrap_delay = "10"`, "", ""),
			msg: "error parsing rebootstrap delay duration: time: missing unit", at: "rebootstrap_delay"},
		{name: "fail/bad sync interval", text: agentConf("    experimental {\n        sync_interval = \"fast\"\n    }", "", ""),
			msg: "could not parse synchronization interval", at: "sync_interval"},
		{name: "fail/zero sync interval", text: agentConf("    experimental {\n        sync_interval = \"0s\"\n    }", "", ""),
			msg: `sync_interval "0s" must be positive`, at: "sync_interval"},
		{name: "fail/negative cache size", text: agentConf(`    x509_svid_cache_max_size = -1`, "", ""),
			msg: "x509_svid_cache_max_size should not be negative", at: "x509_svid_cache_max_size"},
		{name: "fail/bad workload key type", text: agentConf(`    workload_x509_svid_key_type = "ec-p384"`, "", ""),
			msg: `key type "ec-p384" is unknown; must be one of [rsa-2048, ec-p256]`, at: "workload_x509_svid_key_type"},
		{name: "fail/short availability target", text: agentConf(`    availability_target = "1h"`, "", ""),
			msg: "availability_target must be at least 24h0m0s", at: "availability_target"},
		{name: "fail/foreign authorized delegate", text: agentConf(`    authorized_delegates = ["spiffe://other.org/d"]`, "", ""),
			msg: `error validating authorized delegate: "spiffe://other.org/d" is not a member of trust domain "example.org"`, at: "authorized_delegates"},
		{name: "fail/bad log level", text: agentConf(`    log_level = "verbose"`, "", ""),
			msg: `could not start logger: not a valid logrus Level: "verbose"`, at: "log_level"},
		{name: "fail/admin named pipe", text: agentConf("    experimental {\n        admin_named_pipe_name = \"x\"\n    }", "", ""),
			msg: "admin_named_pipe_name is not supported in this platform", at: "admin_named_pipe_name"},

		{name: "fail/unknown plugin type", text: agentConf("", "    Workloadattestor \"unix\" {\n        plugin_data {}\n    }", ""),
			msg: `unsupported plugin type "Workloadattestor"`, at: "Workloadattestor"},
		{name: "fail/unknown workload attestor", text: agentConf("", "    WorkloadAttestor \"docker\" {\n        plugin_data {}\n    }", ""),
			msg: `no built-in plugin "docker" for type "WorkloadAttestor"`, at: `"docker"`},
		{name: "fail/unknown node attestor", text: strings.Replace(agentConf("", "", ""), `"join_token"`, `"k8s_sat"`, 1),
			msg: `no built-in plugin "k8s_sat" for type "NodeAttestor"`, at: `"k8s_sat"`},
		{name: "fail/svid store", text: agentConf("", "    SVIDStore \"aws_secretsmanager\" {\n        plugin_data {}\n    }", ""),
			msg: `no built-in plugin "aws_secretsmanager" for type "SVIDStore"`, at: `"aws_secretsmanager"`},
		{name: "fail/two node attestors", text: agentConf("", "    NodeAttestor \"x509pop\" {\n        plugin_data {\n            private_key_path = \"/k\"\n            certificate_path = \"/c\"\n        }\n    }", ""),
			msg: `plugin type "NodeAttestor" constraint not satisfied: expected exactly 1 but got 2`, at: `NodeAttestor "x509pop"`},
		{name: "fail/x509pop without key", text: strings.Replace(agentConf("", "", ""), "NodeAttestor \"join_token\" {\n        plugin_data {}", "NodeAttestor \"x509pop\" {\n        plugin_data {\n            certificate_path = \"/c\"\n        }", 1),
			msg: `plugin NodeAttestor "x509pop": private_key_path is required`, at: `NodeAttestor "x509pop"`},
		{name: "fail/disk key manager without directory", text: strings.Replace(agentConf("", "", ""), `KeyManager "memory"`, `KeyManager "disk"`, 1),
			msg: `plugin KeyManager "disk": directory must be configured`, at: `KeyManager "disk"`},
		{name: "fail/external workload attestor", text: agentConf("", "    WorkloadAttestor \"unix\" {\n        plugin_cmd = \"/bin/unix\"\n    }", ""),
			msg: "external plugins (plugin_cmd) are not supported", at: "plugin_cmd"},
		{name: "fail/unix attestor size limit not a number", text: agentConf("", "    WorkloadAttestor \"unix\" {\n        plugin_data {\n            workload_size_limit = \"big\"\n        }\n    }", ""),
			msg: `plugin WorkloadAttestor "unix": unable to decode plugin_data`, at: `"unix"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkAgent(t, tt.text)
			wantProblem(t, err, agentName, tt.text, tt.msg, tt.at)
			if tt.err != "" && err.Error() != tt.err {
				t.Fatalf("Error() = %q, want %q", err.Error(), tt.err)
			}
		})
	}
}

func TestAgentOverride(t *testing.T) {
	text := agentConf(`    log_level = "INFO"
    retry_bootstrap = true`, "", "")
	no := false
	f, err := ParseAgent(agentName, text)
	if err != nil {
		t.Fatal(err)
	}
	f.Override(AgentOverrides{
		DataDir: "/flag/data", JoinToken: "flag-token", LogFormat: "json", LogLevel: "debug", LogFile: "/tmp/a.log",
		LogSourceLocation: true, RebootstrapDelay: "2m", RetryBootstrap: &no, ServerAddress: "server.flag", ServerPort: 9081,
		SocketPath: "/tmp/hid-flag/api.sock", TrustBundlePath: "/flag/bundle.pem", TrustBundleFormat: "spiffe",
		TrustDomain: "flag.example", AllowUnauthenticatedVerifiers: true,
	})
	a, err := f.Check()
	if err != nil {
		t.Fatal(err)
	}
	if a.DataDir != "/flag/data" || a.JoinToken != "flag-token" || a.Log.Format != "json" || a.Log.Level.String() != "DEBUG" ||
		a.Log.File != "/tmp/a.log" || !a.Log.SourceLocation || a.RebootstrapDelay != 2*time.Minute || a.RetryBootstrap ||
		a.ServerAddress != "server.flag" || a.ServerPort != 9081 || a.SocketPath != "/tmp/hid-flag/api.sock" ||
		a.TrustBundlePath != "/flag/bundle.pem" || a.TrustBundleFormat != "spiffe" || a.TrustDomain.Name() != "flag.example" ||
		!a.AllowUnauthenticatedVerifiers {
		t.Fatalf("flags did not win: %+v", a)
	}

	t.Run("fail/insecureBootstrap flag with the file's bundle", func(t *testing.T) {
		f, err := ParseAgent(agentName, text)
		if err != nil {
			t.Fatal(err)
		}
		f.Override(AgentOverrides{InsecureBootstrap: true})
		_, err = f.Check()
		wantProblem(t, err, agentName, text, "only one of insecure_bootstrap or trust_bundle_path", "flag -insecureBootstrap")
	})
	t.Run("fail/joinToken flag and join_token_file in the file", func(t *testing.T) {
		text := agentConf(`    join_token_file = "/t"`, "", "")
		f, err := ParseAgent(agentName, text)
		if err != nil {
			t.Fatal(err)
		}
		f.Override(AgentOverrides{JoinToken: "x"})
		_, err = f.Check()
		wantProblem(t, err, agentName, text, "only one of join_token or join_token_file", "join_token_file")
	})
}

// TestAgentReferenceConfigs checks the configurations SPIRE 1.13.3's agent
// was run with (spire-reference): the same verdict and the same first message.
func TestAgentReferenceConfigs(t *testing.T) {
	for _, tt := range []struct {
		file, err, at string
	}{
		{file: "config/agent.conf"},
		{file: "outputs/inputs/configs/secondary-agent-ban.conf"},
		{file: "outputs/inputs/configs/agent-unknown-key.conf", err: "unknown configuration detected", at: ":12:5"},
		{file: "outputs/inputs/configs/agent-missing-trust-domain.conf", err: "trust_domain must be configured", at: ":1:1"},
		{file: "outputs/inputs/configs/agent-missing-trust-bundle.conf", err: "trust_bundle_path or trust_bundle_url must be configured unless insecure_bootstrap is set", at: ":1:1"},
		{file: "outputs/inputs/configs/agent-admin-socket-same-dir.conf", err: "admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket", at: ":8:5"},
	} {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			wantReferenceVerdict(t, ParseAgent, tt.file, tt.err, tt.at)
		})
	}
	t.Run("agent-syntax-error.conf", func(t *testing.T) {
		path := filepath.Join(referenceDir(t), "outputs/inputs/configs/agent-syntax-error.conf")
		_, err := LoadAgent(path, LoadOptions{})
		if want := `unable to decode configuration at "` + path + `": At 3:5: Unknown token: 3:5 IDENT data_dir`; err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
}

func TestLoadAgentDefaultPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	_, err := LoadAgent("", LoadOptions{})
	if want := "could not find config file " + filepath.Join(dir, "conf/agent/agent.conf") + ": please use the -config flag"; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestAgentK8sPSAT(t *testing.T) {
	withPSAT := func(data string) string {
		return strings.Replace(agentConf("", "", ""), "NodeAttestor \"join_token\" {\n        plugin_data {}", "NodeAttestor \"k8s_psat\" {\n        plugin_data {\n"+data+"\n        }", 1)
	}
	a, err := checkAgent(t, withPSAT(`            cluster = "prod"`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (AgentK8sPSAT{Cluster: "prod", TokenPath: "/var/run/secrets/tokens/spire-agent"}); a.NodeAttestor.Name != "k8s_psat" || *a.NodeAttestor.K8sPSAT != want {
		t.Fatalf("NodeAttestor = %+v", a.NodeAttestor)
	}
	a, err = checkAgent(t, withPSAT("            cluster = \"prod\"\n            token_path = \"/run/token\""))
	if err != nil || a.NodeAttestor.K8sPSAT.TokenPath != "/run/token" {
		t.Fatalf("token_path: %v %+v", err, a)
	}
	text := withPSAT(`            token_path = "/run/token"`)
	_, err = checkAgent(t, text)
	wantProblem(t, err, agentName, text, `plugin NodeAttestor "k8s_psat": missing required cluster block`, `NodeAttestor "k8s_psat"`)
}
