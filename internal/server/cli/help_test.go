package cli

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/neural-hive/hive-identity/internal/version"
)

// TestHelpLayout runs every help invocation SPIRE's help capture lists and
// compares the layout (usage headers, flag names, types, defaults, subcommand
// lists and padding, trailers, exit code, streams); sentences are our own.
func TestHelpLayout(t *testing.T) {
	f, err := os.Open(filepath.Join(refDir, "help", "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	n := 0
	for s.Scan() {
		cols := strings.Split(s.Text(), "\t")
		if cols[0] == "file" {
			continue
		}
		file, invocation := cols[0], cols[1]
		exit, err := strconv.Atoi(cols[2])
		if err != nil {
			t.Fatal(err)
		}
		n++
		t.Run(strings.TrimSuffix(file, ".txt"), func(t *testing.T) {
			args := strings.Fields(invocation)[1:]
			want, err := os.ReadFile(filepath.Join(refDir, "help", file))
			if err != nil {
				t.Fatal(err)
			}
			got := runCLI(testEnv(), nil, args...)
			if got.exit != exit || got.stdout != "" {
				t.Errorf("exit %d stdout %q, want exit %d and no stdout", got.exit, got.stdout, exit)
			}
			if file == "spire-server__--version.txt" {
				if got.stderr != version.Version+"\n" {
					t.Errorf("version %q", got.stderr)
				}
				return
			}
			if g, w := normalizeHelp(got.stderr), normalizeHelp(string(want)); g != w {
				t.Errorf("stderr:\n%s\nwant:\n%s", g, w)
			}
		})
	}
	if n < 70 {
		t.Fatalf("only %d help captures", n)
	}
}

// TestHelpSentencesAreOurs guards the rule that only layout is shared: no
// flag description or synopsis of ours repeats SPIRE's wording.
func TestHelpSentencesAreOurs(t *testing.T) {
	theirs := map[string]bool{}
	for _, name := range []string{"spire-server_agent.txt", "spire-server_bundle.txt", "spire-server_entry.txt",
		"spire-server_federation.txt", "spire-server_jwt.txt", "spire-server_x509.txt", "spire-server_token.txt",
		"spire-server_localauthority_x509.txt", "spire-server_localauthority_jwt.txt", "spire-server_logger.txt",
		"spire-server_upstreamauthority.txt", "spire-server_healthcheck.txt", "spire-server.txt"} {
		b, err := os.ReadFile(filepath.Join(refDir, "help", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if m := usageSentence.FindStringSubmatch(l); m != nil {
				theirs[m[1]] = true
			} else if f := strings.SplitN(strings.TrimSpace(l), "    ", 2); len(f) == 2 && strings.TrimSpace(f[1]) != "" {
				theirs[strings.TrimSpace(f[1])] = true
			}
		}
	}
	for _, c := range commands() {
		if c.name == "run" || c.name == "validate" {
			continue
		}
		if theirs[c.synopsis] {
			t.Errorf("%s: synopsis is SPIRE's: %q", c.name, c.synopsis)
		}
		e := testEnv()
		got := runCLI(e, nil, append(strings.Fields(c.name), "-h")...)
		for _, l := range strings.Split(got.stderr, "\n") {
			if m := usageSentence.FindStringSubmatch(l); m != nil && theirs[m[1]] {
				t.Errorf("%s: flag sentence is SPIRE's: %q", c.name, m[1])
			}
		}
	}
}
