package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestParseLogLevel(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want slog.Level
		err  string
	}{
		{in: "DEBUG", want: slog.LevelDebug},
		{in: "debug", want: slog.LevelDebug},
		{in: "Info", want: slog.LevelInfo},
		{in: "WARN", want: slog.LevelWarn},
		{in: "warning", want: slog.LevelWarn},
		{in: "ERROR", want: slog.LevelError},
		{in: "trace", want: LevelTrace},
		{in: "fatal", want: slog.LevelError + 4},
		{in: "panic", want: slog.LevelError + 8},
		{in: "CHATTY", err: `not a valid logrus Level: "CHATTY"`},
		{in: "", err: `not a valid logrus Level: ""`},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLogLevel(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseLogLevel(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if back, _ := ParseLogLevel(LevelName(got)); back != got {
				t.Fatalf("LevelName(%v) = %q does not parse back", got, LevelName(got))
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	t.Run("ok/text with SPIRE level names", func(t *testing.T) {
		var buf bytes.Buffer
		logger, level := Log{Level: slog.LevelInfo, Format: "text"}.NewLogger(&buf)
		logger.Debug("Hidden")
		logger.Warn("Shown", "k", "v")
		level.Set(slog.LevelDebug)
		logger.Debug("Now shown")
		out := buf.String()
		if strings.Contains(out, "Hidden") {
			t.Fatalf("debug logged at info level:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^time=\S+ level=warning msg=Shown k=v$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^time=\S+ level=debug msg="Now shown"$`).MatchString(out) {
			t.Fatalf("unexpected output:\n%s", out)
		}
	})
	t.Run("ok/json", func(t *testing.T) {
		var buf bytes.Buffer
		logger, _ := Log{Level: slog.LevelInfo, Format: "json"}.NewLogger(&buf)
		logger.Error("Boom", "error", "x")
		var rec map[string]any
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("not JSON: %q", buf.String())
		}
		if rec["level"] != "error" || rec["msg"] != "Boom" || rec["error"] != "x" {
			t.Fatalf("record = %v", rec)
		}
	})
	t.Run("ok/source location", func(t *testing.T) {
		var buf bytes.Buffer
		logger, _ := Log{Level: slog.LevelInfo, Format: "text", SourceLocation: true}.NewLogger(&buf)
		logger.Info("Here")
		if !strings.Contains(buf.String(), "source=") || !strings.Contains(buf.String(), "log_test.go") {
			t.Fatalf("no source: %q", buf.String())
		}
	})
}

func TestLogProblems(t *testing.T) {
	text := serverConf("    bogus_b = 1\n    bogus_a = 2\n    ca_ttl = \"1h\"\n    default_x509_svid_ttl = \"2h\"", "", "health_checks {\n    bind = \"x\"\n}\n")
	f, err := ParseServer(serverName, text)
	if err != nil {
		t.Fatal(err)
	}
	_, checkErr := f.Check()
	if checkErr == nil {
		t.Fatal("Check passed")
	}
	var buf bytes.Buffer
	logger, _ := f.LogConfig().NewLogger(&buf)
	LogProblems(context.Background(), logger, nil, checkErr)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`level=warning msg="default_x509_svid_ttl is too high for the configured ca_ttl value.`,
		`level=error msg="Unknown configuration detected" keys=bogus_a,bogus_b section=server positions=6:5,5:5`,
		`level=error msg="Unknown configuration detected" keys=bind section="health check" positions=27:5`,
	}
	if len(lines) != len(want) {
		t.Fatalf("logged:\n%s", buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
	var ce *Error
	if !errors.As(checkErr, &ce) || len(ce.Warnings) != 1 {
		t.Fatalf("warnings not carried by the error: %+v", ce)
	}
}

func TestLogConfig(t *testing.T) {
	f, err := ParseServer(serverName, serverConf("    log_level = \"loud\"\n    log_format = \"json\"", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	if l := f.LogConfig(); l.Level != slog.LevelInfo || l.Format != "json" {
		t.Fatalf("LogConfig = %+v", l)
	}
	a, err := ParseAgent(agentName, agentConf("    log_level = \"debug\"\n    log_format = \"xml\"", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	if l := a.LogConfig(); l.Level != slog.LevelDebug || l.Format != "text" {
		t.Fatalf("LogConfig = %+v", l)
	}
}

// TestSampleConfigs checks the configurations shipped in conf/.
func TestSampleConfigs(t *testing.T) {
	root := filepath.Join("..", "..")
	t.Run("conf/server/server.conf", func(t *testing.T) {
		f, err := LoadServer(filepath.Join(root, "conf/server/server.conf"), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := f.Check()
		if err != nil {
			t.Fatal(err)
		}
		if s.TrustDomain.Name() != "neural-hive.local" || s.DataStore == nil || s.DataStore.DatabaseType != "sqlite3" ||
			s.DataStore.ConnectionString != "./.data/server/datastore.sqlite3" || s.KeyManager.Kind != "disk" ||
			len(s.NodeAttestors) != 1 || s.NodeAttestors[0].Name != "join_token" || !strings.HasSuffix(s.SocketPath, "/.data/server/api.sock") ||
			!s.HealthChecks.ListenerEnabled || s.HealthChecks.BindAddress != "127.0.0.1" || s.HealthChecks.BindPort != 8080 ||
			s.BindAddress.String() != "127.0.0.1:8081" || len(s.Warnings) != 0 {
			t.Fatalf("server.conf = %+v", s)
		}
	})
	t.Run("conf/agent/agent.conf", func(t *testing.T) {
		f, err := LoadAgent(filepath.Join(root, "conf/agent/agent.conf"), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a, err := f.Check()
		if err != nil {
			t.Fatal(err)
		}
		if a.TrustDomain.Name() != "neural-hive.local" || a.SocketPath != "/run/spire/sockets/agent.sock" ||
			a.ServerAddress != "127.0.0.1" || a.ServerPort != 8081 || a.NodeAttestor.Name != "join_token" ||
			a.KeyManager.Kind != "disk" || a.WorkloadAttestorUnix == nil || len(a.Warnings) != 0 {
			t.Fatalf("agent.conf = %+v", a)
		}
	})
	if _, err := os.Stat(filepath.Join(root, "conf")); err != nil {
		t.Fatal(err)
	}
}
