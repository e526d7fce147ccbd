package config

import (
	"errors"
	"fmt"
	"strings"
)

// Location is where a configuration value came from: a place in a file, or a
// command-line flag that overrode the file.
type Location struct {
	File   string
	Line   int // 0 when the problem is about the file as a whole, such as a missing key
	Column int
	Flag   string // the flag, such as "-trustDomain", when the value came from the command line
}

// String formats the location as "file:line:column", "file", or "flag -name".
func (l Location) String() string {
	switch {
	case l.Flag != "":
		return "flag " + l.Flag
	case l.Line > 0:
		return fmt.Sprintf("%s:%d:%d", l.File, l.Line, l.Column)
	default:
		return l.File
	}
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	Location Location
	// Message says what is wrong, in SPIRE's words where SPIRE reports the
	// same condition.
	Message string
	// Section and Key are set when the problem is an unknown key: Key is the
	// key as written, Section the block it sits in, named as SPIRE names it in
	// its "Unknown configuration detected" log ("server", "health check",
	// "Prometheus", ...).
	Section string
	Key     string
}

// String formats the problem with its location first, like a compiler
// diagnostic: "server.conf:6:5: unknown key "bogus_key" in section server".
func (p Problem) String() string {
	if loc := p.Location.String(); loc != "" {
		return loc + ": " + p.Message
	}
	return p.Message
}

// unknownConfigMessage is the single error SPIRE reports for any number of
// unknown keys, after logging each section's keys.
const unknownConfigMessage = "unknown configuration detected"

// Error is every problem found in a configuration, in the order SPIRE
// checks them. It is what Check returns when a configuration is not usable.
type Error struct {
	Problems []Problem
	// Warnings are the warnings found before the check failed, which SPIRE
	// would have logged (see Server.Warnings).
	Warnings []string
}

// Error returns the message SPIRE prints for the first problem: the first
// problem's message, or "unknown configuration detected" when the first
// problem is an unknown key. The full list, with locations, is in Problems
// (see Lines).
func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return "invalid configuration"
	}
	p := e.Problems[0]
	if p.Key != "" {
		return unknownConfigMessage
	}
	return p.Message
}

// Lines returns one line per problem, each with its location
// ("server.conf:9:5: could not parse ..."), in order.
func (e *Error) Lines() []string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		lines = append(lines, p.String())
	}
	return lines
}

// UnknownKeys groups the unknown-key problems by section, in the order SPIRE
// reports sections, each with its keys sorted; SPIRE logs one
// "Unknown configuration detected" line per group.
func (e *Error) UnknownKeys() []UnknownKeys {
	var groups []UnknownKeys
	for _, p := range e.Problems {
		if p.Key == "" {
			continue
		}
		i := 0
		for i < len(groups) && groups[i].Section != p.Section {
			i++
		}
		if i == len(groups) {
			groups = append(groups, UnknownKeys{Section: p.Section})
		}
		groups[i].Keys = append(groups[i].Keys, p.Key)
		groups[i].Locations = append(groups[i].Locations, p.Location)
	}
	for i := range groups {
		sortKeys(&groups[i])
	}
	return groups
}

// UnknownKeys is the unknown keys of one section.
type UnknownKeys struct {
	Section   string
	Keys      []string   // sorted
	Locations []Location // Locations[i] is where Keys[i] is
}

// Positions returns "line:column" of each key, comma-separated, in Keys order.
func (u UnknownKeys) Positions() string {
	parts := make([]string, len(u.Locations))
	for i, l := range u.Locations {
		parts[i] = fmt.Sprintf("%d:%d", l.Line, l.Column)
	}
	return strings.Join(parts, ",")
}

func sortKeys(u *UnknownKeys) {
	// Insertion sort keeps Keys and Locations paired; there are few keys.
	for i := 1; i < len(u.Keys); i++ {
		for j := i; j > 0 && u.Keys[j] < u.Keys[j-1]; j-- {
			u.Keys[j], u.Keys[j-1] = u.Keys[j-1], u.Keys[j]
			u.Locations[j], u.Locations[j-1] = u.Locations[j-1], u.Locations[j]
		}
	}
}

// checker accumulates the problems and warnings of one configuration, in
// check order.
type checker struct {
	d        *document
	problems []Problem
	warnings []string
}

// add records a problem with the value at key path.
func (c *checker) add(path, format string, args ...any) {
	c.addAt(c.d.at(path), format, args...)
}

func (c *checker) addAt(loc Location, format string, args ...any) {
	c.problems = append(c.problems, Problem{Location: loc, Message: fmt.Sprintf(format, args...)})
}

// warn records a warning to log once the logger exists.
func (c *checker) warn(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

func (c *checker) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	return &Error{Problems: c.problems, Warnings: c.warnings}
}

// FormatError returns the text a CLI prints for a configuration error, ending
// in a newline: prefix and err's message on the first line (exactly SPIRE's
// line, "SPIRE server configuration file is invalid: trust_domain must be
// configured"), then, when err is an *Error with several problems, one
// indented line per problem with its location.
func FormatError(prefix string, err error) string {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString(err.Error())
	b.WriteByte('\n')
	var ce *Error
	if errors.As(err, &ce) && len(ce.Problems) > 1 {
		for _, line := range ce.Lines() {
			b.WriteString("  ")
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
