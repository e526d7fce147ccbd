package cli

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
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

// TestRunServesUntilCancelled runs `spire-server run` on a real SQLite
// datastore: the admin socket answers healthcheck, flags override the file,
// and cancelling the context (SIGINT/SIGTERM in main) stops it with exit 0.
func TestRunServesUntilCancelled(t *testing.T) {
	umask := syscall.Umask(0o022)
	syscall.Umask(umask)
	t.Cleanup(func() { syscall.Umask(umask) })

	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "server.conf")
	text := `server {
    bind_address = "127.0.0.1"
    bind_port = "1"
    socket_path = "` + filepath.Join(dir, "file.sock") + `"
    trust_domain = "file.example"
    data_dir = "` + filepath.Join(dir, "data") + `"
    log_level = "ERROR"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "` + filepath.Join(dir, "data", "datastore.sqlite3") + `"
        }
    }
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
`
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s", "api.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"run", "-config", conf, "-socketPath", sock, "-serverPort", strconv.Itoa(port),
			"-trustDomain", "neural-hive.local", "-logLevel", "info"}, strings.NewReader(""), &stdout, &stderr)
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		var out, errOut bytes.Buffer
		if Run(t.Context(), []string{"healthcheck", "-socketPath", sock}, strings.NewReader(""), &out, &errOut) == 0 {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("run exited with %d before serving:\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server not healthy after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out, errOut bytes.Buffer
	if code := Run(t.Context(), []string{"bundle", "show", "-socketPath", sock, "-output", "json"}, strings.NewReader(""), &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), `"trust_domain":"neural-hive.local"`) {
		t.Fatalf("bundle show: %d %s %s", code, out.String(), errOut.String())
	}

	if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		l.Close()
		t.Fatalf("nothing listens on the -serverPort port %d", port)
	}

	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit = %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), `level=info msg="Server stopped gracefully"`) || stderr.Len() != 0 {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "file.sock")); err == nil {
		t.Fatal("the file's socket_path was used despite -socketPath")
	}
}

func TestServerConfigK8sPSAT(t *testing.T) {
	s := checkedServer(t, `server {
    trust_domain = "neural-hive.local"
    data_dir = "/d"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "/d/ds"
        }
    }
    KeyManager "memory" {}
    NodeAttestor "k8s_psat" {
        plugin_data {
            clusters = {
                "prod" = {
                    service_account_allow_list = ["spire-system:spire-agent"]
                }
            }
        }
    }
}
`)
	cfg, err := serverConfig(t.Context(), s, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"clusters": map[string]map[string]any{"prod": {
		"service_account_allow_list": []string{"spire-system:spire-agent"},
		"audience":                   []string(nil),
		"kube_config_file":           "",
		"allowed_node_label_keys":    []string(nil),
		"allowed_pod_label_keys":     []string(nil),
	}}}
	if got := cfg.NodeAttestors["k8s_psat"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("k8s_psat = %#v\nwant %#v", got, want)
	}
}
