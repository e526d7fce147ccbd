package cli

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// copyGoldenInputs copies the recorded configuration files into dir where
// the recorded commands expect them ($RUN/agent/agent.conf, $RUN/inputs/configs/).
func copyGoldenInputs(tb testing.TB, dir string) {
	tb.Helper()
	for _, sub := range []string{"agent", filepath.Join("inputs", "configs")} {
		entries, err := os.ReadDir(filepath.Join(goldenDir, sub))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			tb.Fatal(err)
		}
		for _, entry := range entries {
			data, err := os.ReadFile(filepath.Join(goldenDir, sub, entry.Name()))
			if err != nil {
				tb.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, sub, entry.Name()), data, 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// TestGoldenConfig replays SPIRE's recorded `validate` and `run` invocations
// on its recorded configuration files: exit code and stderr byte for byte;
// stdout byte for byte except log lines, whose format is ours (slog text,
// not logrus), so only their message and fields are checked.
func TestGoldenConfig(t *testing.T) {
	for _, tt := range []struct {
		name   string
		logHas []string // substrings of the single log line expected on stdout
	}{
		{name: "agent_validate_ok"},
		{name: "agent_validate_unknown_key", logHas: []string{`level=error msg="Unknown configuration detected" keys=bogus_key section=agent`}},
		{name: "agent_validate_missing_trust_domain"},
		{name: "agent_validate_missing_trust_bundle"},
		{name: "agent_validate_syntax_error"},
		{name: "agent_validate_admin_socket_same_dir"},
		{name: "agent_validate_missing_file"},
		{name: "agent_run_missing_trust_bundle"},
		{name: "agent_run_syntax_error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := loadGolden(t, tt.name)
			dir := tempDir(t)
			copyGoldenInputs(t, dir)
			got := runCLI(t.Context(), time.Now, argsWithRun(g.args, dir)...)
			want := result{code: g.exit, stdout: withRun(g.stdout, dir), stderr: withRun(g.stderr, dir)}
			if tt.logHas != nil {
				if strings.Count(got.stdout, "\n") != 1 {
					t.Errorf("stdout %q, want one log line", got.stdout)
				}
				for _, s := range tt.logHas {
					if !strings.Contains(got.stdout, s) {
						t.Errorf("stdout %q, want it to contain %q", got.stdout, s)
					}
				}
				got.stdout, want.stdout = "", ""
			}
			assertResult(t, got, want)
		})
	}
}

// TestValidateFlags checks that run/validate flags override the file and
// that a flag error is reported with validate's prefix.
func TestValidateFlags(t *testing.T) {
	dir := tempDir(t)
	copyGoldenInputs(t, dir)
	conf := filepath.Join(dir, "inputs", "configs", "agent-missing-trust-domain.conf")
	got := runCLI(t.Context(), time.Now, "validate", "-config", conf, "-trustDomain", "neural-hive.local")
	assertResult(t, got, result{stdout: "SPIRE agent configuration file is valid.\n"})

	conf = filepath.Join(dir, "inputs", "configs", "agent-missing-trust-bundle.conf")
	got = runCLI(t.Context(), time.Now, "validate", "-config", conf, "-insecureBootstrap")
	assertResult(t, got, result{stdout: "SPIRE agent configuration file is valid.\n"})

	got = runCLI(t.Context(), time.Now, "validate", "-config", conf, "-bogus")
	assertFlagError(t, got, "flag provided but not defined: -bogus", "Usage of validate:\n", false)
	if !strings.HasSuffix(got.stderr, "\nSPIRE agent configuration file is invalid: flag provided but not defined: -bogus\n") {
		t.Errorf("stderr %q", got.stderr)
	}

	// -expandEnv: $RUN in the file becomes the environment's value.
	t.Setenv("RUN", dir)
	got = runCLI(t.Context(), time.Now, "validate", "-config", filepath.Join(dir, "agent", "agent.conf"), "-expandEnv")
	assertResult(t, got, result{stdout: "SPIRE agent configuration file is valid.\n"})
}

// TestRunStopsOnCancel: with a valid configuration and no server to reach,
// run creates the socket directories, keeps retrying the bootstrap, and
// stops gracefully (exit 0) when its context ends.
func TestRunStopsOnCancel(t *testing.T) {
	dir := tempDir(t)
	copyGoldenInputs(t, dir)
	t.Setenv("RUN", dir)
	old := currentUmask()
	t.Cleanup(func() { setUmaskForTest(old) })
	ca := newTestCA(t, "neural-hive.local", time.Now())
	bootstrap := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
	if err := os.WriteFile(filepath.Join(dir, "agent", "bootstrap.pem"), bootstrap, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	got := runCLI(ctx, time.Now, "run", "-config", filepath.Join(dir, "agent", "agent.conf"), "-expandEnv", "-logLevel", "INFO")
	if got.code != 0 || !strings.Contains(got.stdout, "Agent stopped gracefully") {
		t.Errorf("%+v", got)
	}
	// As SPIRE's run does first: the socket directories exist.
	for _, sub := range []string{"a", "aa"} {
		if info, err := os.Stat(filepath.Join(dir, sub)); err != nil || !info.IsDir() {
			t.Errorf("socket directory %s: %v", sub, err)
		}
	}
	if !strings.Contains(got.stdout, `msg="Creating spire agent UDS directory"`) {
		t.Errorf("stdout %q", got.stdout)
	}
}
