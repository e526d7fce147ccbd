package cli

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/version"
)

var (
	// usageLineRE matches a flag's usage line in Go's flag layout.
	usageLineRE = regexp.MustCompile(`^    \t(.*?)( \(default [^)]*\))?$`)
	// commandLineRE matches an entry of a command list ("    name<pad>    synopsis").
	commandLineRE = regexp.MustCompile(`^    (\S+)( *)    (.+)$`)
)

// helpSkeleton replaces the help sentences (flag usage, synopses) by
// placeholders, keeping layout, flag names, types and defaults: what must
// match SPIRE. The golden help files are stored in this form.
func helpSkeleton(s string) string {
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		if m := usageLineRE.FindStringSubmatch(line); m != nil {
			lines[i] = "    \t<usage>" + m[2]
		} else if m := commandLineRE.FindStringSubmatch(line); m != nil {
			lines[i] = "    " + m[1] + m[2] + "    <synopsis>"
		}
	}
	return strings.Join(lines, "\n")
}

// TestHelpLayout runs every help invocation recorded from SPIRE (help/INDEX.tsv)
// and compares the layout, flag names, types and defaults, stream and exit code.
func TestHelpLayout(t *testing.T) {
	index, err := os.Open(filepath.Join(goldenDir, "help", "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer index.Close()
	scanner := bufio.NewScanner(index)
	n := 0
	for scanner.Scan() {
		// file, command, exit code, stdout bytes, stderr bytes
		fields := strings.Split(scanner.Text(), "\t")
		file, args := fields[0], strings.Fields(fields[1])[1:]
		exit, err := strconv.Atoi(fields[2])
		if err != nil {
			t.Fatal(err)
		}
		n++
		t.Run(file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(goldenDir, "help", file))
			if err != nil {
				t.Fatal(err)
			}
			got := runCLI(t.Context(), time.Now, args...)
			wantStderr := string(want)
			if file == "spire-agent__--version.txt" {
				wantStderr = version.Version + "\n" // SPIRE printed its own build's version
			}
			// Extension commands are not in SPIRE's listing.
			got.stderr = regexp.MustCompile(`(?m)^    doctor +    .*\n`).ReplaceAllString(got.stderr, "")
			got.stderr = helpSkeleton(got.stderr)
			assertResult(t, got, result{code: exit, stderr: wantStderr})
		})
	}
	if n < 16 {
		t.Fatalf("only %d help invocations in the index", n)
	}
}

// TestOwnHelpSentences guards the rule that help sentences are our own words.
func TestOwnHelpSentences(t *testing.T) {
	for _, spireWords := range []string{
		"Determines agent health status", "Fetches X509 SVIDs from the Workload API", "Validates a JWT SVID",
		"Desired output format", "Path to the SPIRE Agent API", "Time to wait for a response", "comma separated list of audience values",
		"Path to a SPIRE config file", "Attaches to the Workload API",
	} {
		for _, args := range [][]string{{"-h"}, {"api", "-h"}, {"api", "fetch", "-h"}, {"api", "validate", "-h"}, {"healthcheck", "-h"}, {"run", "-h"}} {
			if got := runCLI(t.Context(), time.Now, args...); strings.Contains(got.stderr, spireWords) {
				t.Errorf("%v help uses SPIRE's sentence %q", args, spireWords)
			}
		}
	}
}

func TestDispatch(t *testing.T) {
	usage := runCLI(t.Context(), time.Now).stderr
	for _, tt := range []struct {
		name      string
		args      []string
		code      int
		stderrHas string
		stderrIs  string
	}{
		{name: "fail/no arguments", args: nil, code: 127, stderrIs: usage},
		{name: "fail/unknown command", args: []string{"nosuch"}, code: 127, stderrIs: usage},
		{name: "fail/unknown command with help", args: []string{"nosuch", "-h"}, code: 127, stderrIs: usage},
		{name: "fail/partial word is no command", args: []string{"runx"}, code: 127, stderrIs: usage},
		{name: "ok/help anywhere", args: []string{"healthcheck", "-socketPath", "/x", "--help"}, code: 0, stderrHas: "Usage of health:\n"},
		{name: "ok/-help", args: []string{"api", "watch", "-help"}, code: 0, stderrHas: "Usage of watch:\n"},
		{name: "ok/version", args: []string{"-v"}, code: 0, stderrIs: version.Version + "\n"},
		{name: "ok/version wins over help", args: []string{"--version", "-h"}, code: 0, stderrIs: version.Version + "\n"},
		{name: "fail/group without subcommand", args: []string{"api", "bogus"}, code: 1, stderrHas: "\n\nSubcommands:\n    fetch "},
		{name: "fail/word-prefix only", args: []string{"api", "fetch", "jwtx"}, code: 1, stderrHas: "This command is accessed by using one of the subcommands below."},
		{name: "fail/flags before the command", args: []string{"-socketPath", "healthcheck"}, code: 1,
			stderrHas: "Invalid flags before the subcommand. If these flags are for\nthe subcommand, please put them after the subcommand.\n\nUsage of health:\n"},
		{name: "fail/after -- no help", args: []string{"healthcheck", "-socketPath", "/nonexistent/hid/api.sock", "--", "-h"}, code: 1, stderrHas: "Agent is unhealthy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := runCLI(t.Context(), time.Now, tt.args...)
			if got.code != tt.code || got.stdout != "" {
				t.Errorf("exit %d stdout %q, want exit %d and no stdout", got.code, got.stdout, tt.code)
			}
			if tt.stderrIs != "" && got.stderr != tt.stderrIs {
				t.Errorf("stderr:\n%s\nwant:\n%s", got.stderr, tt.stderrIs)
			}
			if !strings.Contains(got.stderr, tt.stderrHas) {
				t.Errorf("stderr:\n%s\nwant it to contain %q", got.stderr, tt.stderrHas)
			}
		})
	}
}

func TestRunFlags(t *testing.T) {
	e := &env{stderr: &strings.Builder{}}
	fs, f, finish := newRunFlagSet(e, "run")
	err := fs.Parse([]string{"-config", "a.conf", "-joinToken", "T", "-serverAddress", "srv", "-serverPort", "8081",
		"-socketPath", "/s.sock", "-trustDomain", "td", "-trustBundle", "b.pem", "-dataDir", "d", "-logLevel", "DEBUG",
		"-logFormat", "json", "-expandEnv", "-insecureBootstrap", "-retryBootstrap=false"})
	if err != nil {
		t.Fatal(err)
	}
	finish()
	if f.ConfigPath != "a.conf" || f.JoinToken != "T" || f.ServerAddress != "srv" || f.ServerPort != 8081 ||
		f.SocketPath != "/s.sock" || f.TrustDomain != "td" || f.TrustBundlePath != "b.pem" || f.DataDir != "d" ||
		f.LogLevel != "DEBUG" || f.LogFormat != "json" || !f.ExpandEnv || !f.InsecureBootstrap ||
		f.RetryBootstrap == nil || *f.RetryBootstrap {
		t.Errorf("parsed %+v", f)
	}

	_, f, finish = newRunFlagSet(e, "run")
	finish()
	if f.ConfigPath != defaultConfigPath || f.RetryBootstrap != nil {
		t.Errorf("defaults %+v", f)
	}
}

func TestRunCommand(t *testing.T) {
	got := runCLI(t.Context(), time.Now, "run", "-config", "nosuch.conf")
	if got.code != 1 || got.stdout != "" || got.stderr == "" {
		t.Errorf("%+v", got)
	}
	got = runCLI(t.Context(), time.Now, "run", "-bogus")
	assertFlagError(t, got, "flag provided but not defined: -bogus", "Usage of run:\n", true)
}

func currentUmask() int {
	old := syscall.Umask(0o022)
	syscall.Umask(old)
	return old
}

func setUmaskForTest(mask int) { syscall.Umask(mask) }
