package cli

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// refDir is the copy of SPIRE's captured outputs the golden tests replay.
const refDir = "testdata/spire-reference"

// refCase is one recorded spire-server invocation.
type refCase struct {
	name   string
	cmd    string
	stdout string
	stderr string
	exit   int
}

func readRef(tb testing.TB, name, ext string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(refDir, "outputs", name+ext))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func loadRef(tb testing.TB, name string) refCase {
	tb.Helper()
	exit, err := strconv.Atoi(strings.TrimSpace(readRef(tb, name, ".exit")))
	if err != nil {
		tb.Fatal(err)
	}
	return refCase{
		name:   name,
		cmd:    strings.TrimSpace(readRef(tb, name, ".cmd")),
		stdout: readRef(tb, name, ".stdout"),
		stderr: readRef(tb, name, ".stderr"),
		exit:   exit,
	}
}

// refNames lists the recorded invocations in the order they were run.
func refNames(tb testing.TB) []string {
	tb.Helper()
	f, err := os.Open(filepath.Join(refDir, "outputs", "INDEX.tsv"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var names []string
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		cols := strings.Split(s.Text(), "\t")
		if len(cols) < 4 || cols[0] == "seq" {
			continue
		}
		names = append(names, cols[1])
	}
	return names
}

// shellWords splits a command line quoted by bash's printf %q (backslash
// escapes, no quotes) and returns the words and the stdin redirection.
func shellWords(line string) (words []string, stdin string) {
	if i := strings.Index(line, " < "); i >= 0 {
		line, stdin = line[:i], strings.TrimSpace(line[i+3:])
	}
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, stdin
}

// runResult is the outcome of one CLI invocation.
type runResult struct {
	stdout, stderr string
	exit           int
}

// runCLI runs the command line args (without the program name) with e's
// hooks; stdin is empty unless given.
func runCLI(e env, stdin []byte, args ...string) runResult {
	var out, errOut bytes.Buffer
	e.stdin = bytes.NewReader(stdin)
	e.stdout, e.stderr = &out, &errOut
	code := run(context.Background(), &e, args)
	return runResult{stdout: out.String(), stderr: errOut.String(), exit: code}
}

// refTime is the wall clock of the capture, for commands whose output depends on now.
var refTime = time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)

func testEnv() env {
	return env{now: func() time.Time { return refTime }, loc: time.UTC}
}

// usageSentence matches the flag description line of Go's flag usage.
var usageSentence = regexp.MustCompile(`^    \t(.*?)( \(default .*\))?$`)

// normalizeHelp keeps the facts of a usage text (command headers, flag names,
// types and defaults, subcommand names and layout) and drops the sentences,
// which are each implementation's own words.
//
// Our extension flags (entry create/update -ttl) are dropped so the rest can
// be compared with SPIRE's.
func normalizeHelp(s string) string {
	lines := strings.Split(s, "\n")
	inList := false
	usage := ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if h, ok := strings.CutPrefix(l, "Usage of "); ok {
			usage = strings.TrimSuffix(h, ":")
		}
		if (usage == "entry create" || usage == "entry update") && l == "  -ttl int" && i+1 < len(lines) {
			lines = slices.Delete(lines, i, i+2)
			i--
			continue
		}
		switch {
		case usageSentence.MatchString(l):
			m := usageSentence.FindStringSubmatch(l)
			lines[i] = "    \t<sentence>" + m[2]
		case l == "Subcommands:" || l == "Available commands are:":
			inList = true
		case inList && strings.HasPrefix(l, "    doctor "):
			// Extension commands are not in SPIRE's listing.
			lines = slices.Delete(lines, i, i+1)
			i--
		case inList && strings.HasPrefix(l, "    "):
			// "    name<pad>    synopsis": keep the padded name and whether a synopsis exists.
			name := strings.TrimLeft(l[4:], " ")
			fields := strings.SplitN(name, "    ", 2)
			if len(fields) == 2 {
				trimmed := strings.TrimLeft(fields[1], " ")
				pad := len(fields[1]) - len(trimmed)
				syn := ""
				if trimmed != "" {
					syn = "<synopsis>"
				}
				lines[i] = "    " + fields[0] + strings.Repeat(" ", 4+pad) + syn
			}
		default:
			inList = false
		}
	}
	return strings.Join(lines, "\n")
}
