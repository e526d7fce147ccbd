package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// configRefDir holds the part of the SPIRE 1.13.3 capture that concerns
// configuration (kept by the config package); the validate/run captures were
// made from $RUN with these files under it.
const configRefDir = "../../config/testdata/spire-reference"

// configRef returns the absolute path of a file under configRefDir, usable
// after the test changed directory.
func configRef(t *testing.T, rel string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(configRefDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// setupConfigRun lays out $RUN as the capture had it (server/server.conf and
// inputs/configs/*.conf, with $RUN replaced) and makes it the working
// directory; it returns $RUN.
func setupConfigRun(t *testing.T) string {
	t.Helper()
	ref := configRef(t, ".")
	dir := t.TempDir()
	copyRef := func(from, to string) {
		raw, err := os.ReadFile(filepath.Join(ref, from))
		if err != nil {
			t.Fatal(err)
		}
		to = filepath.Join(dir, to)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, []byte(strings.ReplaceAll(string(raw), "$RUN", dir)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyRef("config/server.conf", "server/server.conf")
	confs, err := filepath.Glob(filepath.Join(ref, "outputs/inputs/configs/server-*.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range confs {
		copyRef(strings.TrimPrefix(c, ref+"/"), filepath.Join("inputs/configs", filepath.Base(c)))
	}
	t.Chdir(dir)
	return dir
}

// runConfigCLI runs the spire-server command line and returns stdout, stderr and the exit code.
func runConfigCLI(ctx context.Context, args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	code := Run(ctx, args, strings.NewReader(""), &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

var logTime = regexp.MustCompile(`(?m)^time=("[^"]*"|\S+) `)

// TestValidateAndRunGolden replays the validate and run captures of SPIRE
// 1.13.3 whose outcome is decided by the configuration: same exit code, same
// stderr byte for byte, and the same log lines on stdout once timestamps are
// removed (ours add the positions of unknown keys).
func TestValidateAndRunGolden(t *testing.T) {
	for _, name := range []string{
		"server_validate_ok",
		"server_validate_unknown_key",
		"server_validate_missing_trust_domain",
		"server_validate_syntax_error",
		"server_validate_bad_ca_key_type",
		"server_validate_bad_ttl",
		"server_validate_bad_trust_domain",
		"server_validate_bad_log_level",
		"server_validate_no_datastore",
		"server_validate_svid_ttl_exceeds_ca",
		"server_validate_missing_file",
		"server_validate_default_path_missing",
		"server_run_syntax_error",
		"server_run_missing_trust_domain",
		"server_run_unknown_key",
	} {
		t.Run(name, func(t *testing.T) {
			outputs := configRef(t, "outputs")
			dir := setupConfigRun(t)
			read := func(ext string) string {
				raw, err := os.ReadFile(filepath.Join(outputs, name+"."+ext))
				if err != nil {
					t.Fatal(err)
				}
				return strings.ReplaceAll(string(raw), "$RUN", dir)
			}
			args := strings.Fields(strings.TrimSpace(read("cmd")))
			if args[0] == "timeout" {
				args = args[2:]
			}
			wantCode, err := strconv.Atoi(strings.TrimSpace(read("exit")))
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := runConfigCLI(t.Context(), args[1:]...)
			if code != wantCode {
				t.Errorf("exit code = %d, want %d", code, wantCode)
			}
			if want := read("stderr"); stderr != want {
				t.Errorf("stderr:\n%q\nwant:\n%q", stderr, want)
			}
			want := logTime.ReplaceAllString(read("stdout"), "")
			got := logTime.ReplaceAllString(stdout, "")
			if strings.Contains(want, "Unknown configuration detected") {
				got = regexp.MustCompile(` positions=\S+`).ReplaceAllString(got, "")
				if !strings.Contains(stdout, "keys=bogus_key section=server positions=6:5") {
					t.Errorf("unknown key log without its position: %q", stdout)
				}
			}
			if got != want {
				t.Errorf("stdout:\n%q\nwant:\n%q", got, want)
			}
		})
	}
}

func TestValidateFlags(t *testing.T) {
	dir := setupConfigRun(t)
	conf := filepath.Join(dir, "server", "server.conf")
	for _, tt := range []struct {
		name       string
		args       []string
		env        map[string]string
		code       int
		stdout     string
		stderr     string
		stdoutHas  string
		stderrHave []string
	}{
		{name: "ok/flags override a broken file", args: []string{"-config", filepath.Join(dir, "inputs/configs/server-missing-trust-domain.conf"), "-trustDomain", "neural-hive.local"},
			stdout: "SPIRE server configuration file is valid.\n"},
		{name: "fail/a bad flag value is reported", args: []string{"-config", conf, "-trustDomain", "Bad.Domain"},
			code: 1, stderr: `SPIRE server configuration file is invalid: could not parse trust_domain "Bad.Domain": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores` + "\n"},
		{name: "fail/-logLevel overrides log_level", args: []string{"-config", conf, "-logLevel", "LOUD"},
			code: 1, stderr: "SPIRE server configuration file is invalid: could not start logger: not a valid logrus Level: \"LOUD\"\n"},
		{name: "ok/-logFormat json logs warnings as JSON", args: []string{"-config", filepath.Join(dir, "inputs/configs/server-svid-ttl-exceeds-ca.conf"), "-logFormat", "json"},
			stdoutHas: `"level":"warning","msg":"default_x509_svid_ttl is too high`},
		{name: "ok/-expandEnv", args: []string{"-config", "envconf", "-expandEnv"}, env: map[string]string{"HID_TEST_TD": "neural-hive.local"},
			stdout: "SPIRE server configuration file is valid.\n"},
		{name: "fail/without -expandEnv the variable is literal", args: []string{"-config", "envconf"},
			code: 1, stderr: "SPIRE server configuration file is invalid: could not parse trust_domain \"${HID_TEST_TD}\": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores\n"},
		{name: "fail/several problems are all listed with their locations", args: []string{"-config", "multi.conf"},
			code: 1, stderrHave: []string{
				"SPIRE server configuration file is invalid: trust_domain must be configured\n",
				"  multi.conf:1:1: trust_domain must be configured\n",
				"  multi.conf:3:5: could not parse default X509 SVID ttl \"soon\": time: invalid duration \"soon\"\n",
				"  multi.conf:4:5: unknown key \"colour\" in section server\n",
				"  multi.conf:7:18: no built-in plugin \"ldap\" for type \"NodeAttestor\" (available: join_token, k8s_psat, x509pop)\n",
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			envConf := strings.Replace(string(raw), `"neural-hive.local"`, `"${HID_TEST_TD}"`, 1)
			if err := os.WriteFile("envconf", []byte(envConf), 0o600); err != nil {
				t.Fatal(err)
			}
			multi := "server {\n    data_dir = \"/d\"\n    default_x509_svid_ttl = \"soon\"\n    colour = \"blue\"\n}\nplugins {\n    NodeAttestor \"ldap\" {}\n}\n"
			if err := os.WriteFile("multi.conf", []byte(multi), 0o600); err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			stdout, stderr, code := runConfigCLI(t.Context(), append([]string{"validate"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit = %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if tt.stdout != "" && stdout != tt.stdout {
				t.Errorf("stdout = %q, want %q", stdout, tt.stdout)
			}
			if tt.stdoutHas != "" && !strings.Contains(stdout, tt.stdoutHas) {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.stdoutHas)
			}
			if tt.stderr != "" && stderr != tt.stderr {
				t.Errorf("stderr = %q, want %q", stderr, tt.stderr)
			}
			if tt.stderrHave != nil && stderr != strings.Join(tt.stderrHave, "") {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, strings.Join(tt.stderrHave, ""))
			}
		})
	}
}

func TestValidateLogFile(t *testing.T) {
	dir := setupConfigRun(t)
	logFile := filepath.Join(dir, "validate.log")
	stdout, stderr, code := runConfigCLI(t.Context(), "validate", "-config", filepath.Join(dir, "inputs/configs/server-unknown-key.conf"), "-logFile", logFile)
	if code != 1 || stderr != "SPIRE server configuration file is invalid: unknown configuration detected\n" || stdout != "" {
		t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), `msg="Unknown configuration detected" keys=bogus_key section=server`) {
		t.Fatalf("log file = %q", logged)
	}
	st, err := os.Stat(logFile)
	if err != nil || st.Mode().Perm()&0o007 != 0 {
		t.Fatalf("log file mode = %v, %v", st.Mode(), err)
	}
}

// TestRunAndValidateHelp checks the flags of run and validate against SPIRE's
// -h output: same names, types and defaults, in the same order (the
// descriptions are ours).
func TestRunAndValidateHelp(t *testing.T) {
	flagLines := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "  -") {
				out = append(out, l)
			}
		}
		return out
	}
	for _, cmd := range []string{"run", "validate"} {
		t.Run(cmd, func(t *testing.T) {
			_, stderr, code := runConfigCLI(t.Context(), cmd, "-h")
			if code != 0 {
				t.Fatalf("exit = %d", code)
			}
			raw, err := os.ReadFile(filepath.Join(configRefDir, "help/spire-server_"+cmd+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := flagLines(stderr), flagLines(string(raw)); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("flags:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if !strings.HasPrefix(stderr, "Usage of "+cmd+":\n") || !strings.HasSuffix(stderr, "flag: help requested\n") {
				t.Fatalf("help layout: %q", stderr)
			}
		})
	}
}
