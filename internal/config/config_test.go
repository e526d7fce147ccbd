package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// posOf returns "name:line:col" of the first occurrence of marker in text.
func posOf(tb testing.TB, name, text, marker string) string {
	tb.Helper()
	i := strings.Index(text, marker)
	if i < 0 {
		tb.Fatalf("marker %q not in text", marker)
	}
	line := strings.Count(text[:i], "\n") + 1
	col := i - strings.LastIndex(text[:i], "\n")
	return fmt.Sprintf("%s:%d:%d", name, line, col)
}

// wantProblem checks that err is an *Error holding a problem whose message
// contains msg, located at the first occurrence of at in text ("" for a
// problem without a line, "flag -x" for a flag).
func wantProblem(tb testing.TB, err error, name, text, msg, at string) {
	tb.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		tb.Fatalf("error = %v (%T), want *Error", err, err)
	}
	for _, p := range ce.Problems {
		if !strings.Contains(p.Message, msg) {
			continue
		}
		var want string
		switch {
		case at == "":
			want = name
		case strings.HasPrefix(at, "flag "):
			want = at
		default:
			want = posOf(tb, name, text, at)
		}
		if got := p.Location.String(); got != want {
			tb.Fatalf("problem %q at %s, want %s", p.Message, got, want)
		}
		return
	}
	tb.Fatalf("no problem containing %q in:\n%s", msg, strings.Join(ce.Lines(), "\n"))
}

// parseText decodes text named name with parse (ParseAgent, ParseServer),
// failing the test when it does not decode.
func parseText[F any](tb testing.TB, parse func(name, data string) (F, error), name, text string) F {
	tb.Helper()
	f, err := parse(name, text)
	if err != nil {
		tb.Fatalf("parse %s: %v", name, err)
	}
	return f
}

func referenceDir(tb testing.TB) string {
	tb.Helper()
	return "testdata/spire-reference"
}

// wantReferenceVerdict checks a configuration SPIRE 1.13.3 was run with
// (file, under referenceDir; $RUN stands for /tmp/run): valid when wantErr
// is empty, else failing with the single problem wantErr at "ref.conf"+at,
// as SPIRE reported it.
func wantReferenceVerdict[F interface{ Validate() error }](tb testing.TB, parse func(name, data string) (F, error), file, wantErr, at string) {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(referenceDir(tb), file))
	if err != nil {
		tb.Fatal(err)
	}
	err = parseText(tb, parse, "ref.conf", strings.ReplaceAll(string(raw), "$RUN", "/tmp/run")).Validate()
	if wantErr == "" {
		if err != nil {
			tb.Fatalf("Check: %v", err)
		}
		return
	}
	var ce *Error
	if !errors.As(err, &ce) || err.Error() != wantErr || len(ce.Problems) != 1 || ce.Problems[0].Location.String() != "ref.conf"+at {
		tb.Fatalf("err = %v, problems %+v; want %q at %s", err, ce, wantErr, at)
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"TD": "example.org", "DIR": "/var/lib/spire"}
	getenv := func(k string) string { return env[k] }
	for _, tt := range []struct {
		name, in, want string
	}{
		{"ok/plain", "$TD", "example.org"},
		{"ok/braces", "${DIR}/data", "/var/lib/spire/data"},
		{"ok/unset is empty", "x${NOPE}y", "xy"},
		{"ok/dollar dollar is a dollar", "cost $$5", "cost $5"},
		{"ok/no variables", "trust_domain = \"a\"", "trust_domain = \"a\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExpandEnv(tt.in, getenv); got != tt.want {
				t.Fatalf("ExpandEnv(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestErrorFormatting(t *testing.T) {
	one := &Error{Problems: []Problem{{Location: Location{File: "s.conf", Line: 9, Column: 5}, Message: "bad ttl"}}}
	if got := FormatError("invalid: ", one); got != "invalid: bad ttl\n" {
		t.Fatalf("one problem: %q", got)
	}
	unknown := &Error{Problems: []Problem{
		{Location: Location{File: "s.conf", Line: 6, Column: 5}, Message: `unknown key "b" in section server`, Section: "server", Key: "b"},
		{Location: Location{File: "s.conf", Line: 2, Column: 5}, Message: `unknown key "a" in section server`, Section: "server", Key: "a"},
		{Location: Location{Flag: "-trustDomain"}, Message: "could not parse trust_domain"},
	}}
	want := "invalid: unknown configuration detected\n" +
		"  s.conf:6:5: unknown key \"b\" in section server\n" +
		"  s.conf:2:5: unknown key \"a\" in section server\n" +
		"  flag -trustDomain: could not parse trust_domain\n"
	if got := FormatError("invalid: ", unknown); got != want {
		t.Fatalf("several problems:\n%s\nwant:\n%s", got, want)
	}
	groups := unknown.UnknownKeys()
	if len(groups) != 1 || strings.Join(groups[0].Keys, ",") != "a,b" || groups[0].Positions() != "2:5,6:5" || groups[0].Section != "server" {
		t.Fatalf("UnknownKeys = %+v", groups)
	}
	if got := FormatError("x: ", errors.New("plain")); got != "x: plain\n" {
		t.Fatalf("plain error: %q", got)
	}
}
