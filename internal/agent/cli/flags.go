package cli

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// defaultSocketPath is the Workload API socket the commands talk to unless
// -socketPath says otherwise (SPIRE's default on POSIX systems).
const defaultSocketPath = "/tmp/spire-agent/public/api.sock"

// defaultTimeout bounds each Workload API call of the api commands.
const defaultTimeout = 5 * time.Second

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its usage ("Usage of <name>:" and the flags) on w.
func newFlagSet(name string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	return fs
}

// printUsage prints the usage of fs on its output, as -h would.
func printUsage(fs *flag.FlagSet) {
	_ = fs.Parse([]string{"-h"})
}

// socketTarget turns a socket path, relative to the working directory or
// absolute, into a gRPC target ("unix:///abs/path").
func socketTarget(socketPath string) (string, error) {
	abs, err := filepath.Abs(socketPath)
	if err != nil {
		return "", fmt.Errorf("failed to get absolute path for socket path: %w", err)
	}
	return "unix://" + abs, nil
}

// outputFlag is the -output (and deprecated -format) flag: pretty or json.
// Its zero value means pretty, so the usage shows no default, as SPIRE's does.
type outputFlag struct {
	json bool
	set  bool
}

func (f *outputFlag) String() string {
	if f != nil && f.json {
		return "json"
	}
	return "pretty"
}

// Set accepts "pretty" (or "prettyprint") and "json" in any case; a second
// -output (or -format) must repeat the first one's text exactly.
func (f *outputFlag) Set(v string) error {
	if f.set && f.String() != v {
		return fmt.Errorf("the output format has already been set to %q", f.String())
	}
	switch strings.ToLower(v) {
	case "json":
		f.json = true
	case "pretty", "prettyprint":
		f.json = false
	default:
		return fmt.Errorf("bad formatter flag: unknown format option: %q", v)
	}
	f.set = true
	return nil
}

// durationFlag is a time.Duration flag whose usage type reads "value", like
// SPIRE's -timeout.
type durationFlag time.Duration

func (f *durationFlag) String() string { return time.Duration(*f).String() }

func (f *durationFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	*f = durationFlag(d)
	return nil
}

// commaListFlag splits its value on commas; when given more than once, the
// last occurrence wins (SPIRE's -audience behaves this way).
type commaListFlag []string

func (f *commaListFlag) String() string { return strings.Join(*f, ",") }

func (f *commaListFlag) Set(v string) error {
	*f = strings.Split(v, ",")
	return nil
}
