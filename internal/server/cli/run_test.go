package cli

import (
	"bytes"
	"crypto/x509/pkix"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/config"
	"github.com/neural-hive/hive-identity/internal/server"
)

func checkedServer(t *testing.T, text string) *config.Server {
	t.Helper()
	f, err := config.ParseServer("server.conf", text)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Check()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServerConfig(t *testing.T) {
	s := checkedServer(t, `server {
    bind_address = "127.0.0.1"
    bind_port = "48081"
    socket_path = "/tmp/hid-run/api.sock"
    trust_domain = "neural-hive.local"
    data_dir = "/var/lib/hid"
    ca_ttl = "48h"
    ca_key_type = "ec-p384"
    jwt_key_type = "rsa-2048"
    default_x509_svid_ttl = "2h"
    default_jwt_svid_ttl = "10m"
    jwt_issuer = "https://issuer.example"
    admin_ids = ["spiffe://neural-hive.local/admin"]
    ca_subject {
        country = ["BR"]
        organization = ["Neural Hive"]
        common_name = "hive"
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "postgres"
            connection_string = "postgres://db/spire"
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = "/var/lib/hid/keys.json"
        }
    }
    UpstreamAuthority "disk" {
        plugin_data {
            cert_file_path = "/ca/cert.pem"
            key_file_path = "/ca/key.pem"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    NodeAttestor "x509pop" {
        plugin_data {
            ca_bundle_path = "/ca/agents.pem"
        }
    }
}

health_checks {
    listener_enabled = true
    bind_address = "127.0.0.1"
    bind_port = "48080"
}

telemetry {
    Prometheus {
        host = "127.0.0.1"
        port = 48090
    }
}
`)
	logger := slog.New(slog.DiscardHandler)
	level := new(slog.LevelVar)
	cfg, err := serverConfig(t.Context(), s, logger, level)
	if err != nil {
		t.Fatal(err)
	}
	want := server.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("neural-hive.local"),
		BindAddress: s.BindAddress,
		SocketPath:  "/tmp/hid-run/api.sock",
		DataDir:     "/var/lib/hid",
		Logger:      logger,
		LogLevel:    level,
		CATTL:       48 * time.Hour,
		CAKeyType:   "ec-p384",
		CASubject:   pkix.Name{Country: []string{"BR"}, Organization: []string{"Neural Hive"}, CommonName: "hive"},
		X509SVIDTTL: 2 * time.Hour,
		JWTSVIDTTL:  10 * time.Minute,
		JWTKeyType:  "rsa-2048",
		JWTIssuer:   "https://issuer.example",
		AdminIDs:    []spiffeid.ID{spiffeid.RequireFromString("spiffe://neural-hive.local/admin")},
		DataStore:   server.DataStoreConfig{DatabaseType: "postgres", ConnectionString: "postgres://db/spire"},
		KeyManager:  server.KeyManagerConfig{Kind: "disk", KeysPath: "/var/lib/hid/keys.json"},
		UpstreamAuthority: &server.UpstreamDiskConfig{
			CertFilePath: "/ca/cert.pem", KeyFilePath: "/ca/key.pem",
		},
		NodeAttestors: map[string]map[string]any{
			"join_token": {},
			"x509pop": {
				"mode":                "external_pki",
				"ca_bundle_paths":     []string{"/ca/agents.pem"},
				"agent_path_template": "",
				"spiffe_prefix":       "/spire-exchange/",
			},
		},
		HealthChecks: server.HealthChecksConfig{ListenerEnabled: true, BindAddress: "127.0.0.1", BindPort: 48080, LivePath: "/live", ReadyPath: "/ready"},
		Telemetry:    server.TelemetryConfig{PrometheusEnabled: true, PrometheusHost: "127.0.0.1", PrometheusPort: 48090},
	}
	if cfg.BindAddress.String() != "127.0.0.1:48081" {
		t.Errorf("BindAddress = %v", cfg.BindAddress)
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestServerConfigRefusals(t *testing.T) {
	base := `server {
    trust_domain = "neural-hive.local"
    data_dir = "/d"
}
plugins {
%s
}
`
	for _, tt := range []struct {
		name, plugins, err string
	}{
		{"fail/no DataStore", `    KeyManager "memory" {}`, "expecting a DataStore plugin"},
		{"fail/no KeyManager", "    DataStore \"sql\" {\n        plugin_data {\n            database_type = \"sqlite3\"\n            connection_string = \"/d/ds\"\n        }\n    }",
			`plugin type "KeyManager" constraint not satisfied: expected exactly 1 but got 0`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := checkedServer(t, strings.Replace(base, "%s", tt.plugins, 1))
			_, err := serverConfig(t.Context(), s, slog.New(slog.DiscardHandler), new(slog.LevelVar))
			if err == nil || err.Error() != tt.err {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}

	t.Run("fail/run prints the refusal and exits 1", func(t *testing.T) {
		dir := t.TempDir()
		conf := filepath.Join(dir, "server.conf")
		if err := os.WriteFile(conf, []byte(strings.Replace(base, "%s", `    KeyManager "memory" {}`, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		code := Run(t.Context(), []string{"run", "-config", conf}, strings.NewReader(""), &stdout, &stderr)
		if code != 1 || stderr.String() != "expecting a DataStore plugin\n" {
			t.Fatalf("code %d stderr %q stdout %q", code, stderr.String(), stdout.String())
		}
	})
}

func TestServerConfigWarnsAboutIgnoredSettings(t *testing.T) {
	s := checkedServer(t, `server {
    trust_domain = "neural-hive.local"
    data_dir = "/d"
    agent_ttl = "4h"
    ratelimit {
        attestation = false
    }
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "/d/ds"
        }
    }
    KeyManager "memory" {}
}
`)
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	if _, err := serverConfig(t.Context(), s, logger, new(slog.LevelVar)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"agent_ttl", "ratelimit.attestation"} {
		if !strings.Contains(buf.String(), "key="+key) {
			t.Errorf("no warning for %s in %q", key, buf.String())
		}
	}
}
