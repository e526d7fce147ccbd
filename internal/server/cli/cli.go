// Package cli is the spire-server command line: every command except run and
// validate is a pure gRPC client of the spire-api-sdk services on the server's
// admin unix socket, with SPIRE 1.13's flags, output formats, exit codes and
// help layout. It owns argument dispatch, help, the socket client and the
// pretty/JSON printers; it does not own the server (run.go starts it) nor the
// configuration (validate.go checks it).
//
// # Contract for run.go and validate.go
//
// run.go and validate.go (written by the config owner) live in this package
// and provide exactly:
//
//	const runSynopsis, validateSynopsis string // one line each, shown in the top-level usage
//	func setupRun(fs *flag.FlagSet, e *env) func(ctx context.Context) int
//	func setupValidate(fs *flag.FlagSet, e *env) func(ctx context.Context) int
//
// setupX registers the command's flags on fs and returns its action. fs is
// named "run" (or "validate"), uses flag.ContinueOnError and writes to
// e.stderr, so `-h` and flag errors print SPIRE's usage layout without any
// work in setupX. The action is called only after fs.Parse succeeded (fs.Args
// holds the extra arguments); ctx is cancelled on SIGINT/SIGTERM; it writes
// its own messages to e.stdout/e.stderr and returns the process exit code.
package cli

import (
	"context"
	"crypto"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/neural-hive/hive-identity/internal/version"
)

// env is what a command may touch outside its flags: the standard streams and,
// for tests, the clock, the time zone of agent expiry times and the key
// generator of `x509 mint`.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	now    func() time.Time              // nil: time.Now
	loc    *time.Location                // nil: time.Local (SPIRE prints agent times in local time)
	newKey func() (crypto.Signer, error) // nil: ECDSA P-256
}

func (e *env) printf(format string, args ...any) error {
	_, err := fmt.Fprintf(e.stdout, format, args...)
	return err
}

func (e *env) errorf(format string, args ...any) error {
	_, err := fmt.Fprintf(e.stderr, format, args...)
	return err
}

func (e *env) clock() time.Time {
	if e.now != nil {
		return e.now()
	}
	return time.Now()
}

func (e *env) location() *time.Location {
	if e.loc != nil {
		return e.loc
	}
	return time.Local
}

// command is one runnable command of the tree. Intermediate words ("entry",
// "localauthority x509") are groups derived from the names; they only print
// the usage of their subcommands.
type command struct {
	name     string // full name as typed: "entry create"
	flagName string // name in "Usage of ...:"; empty means name
	synopsis string
	setup    func(fs *flag.FlagSet, e *env) func(ctx context.Context) int
}

// commands is the registry, in no particular order (help output is sorted).
func commands() []command {
	return slices.Concat(
		[]command{
			{name: "run", synopsis: runSynopsis, setup: setupRun},
			{name: "validate", synopsis: validateSynopsis, setup: setupValidate},
			{name: "healthcheck", synopsis: "Checks that the server answers on its admin socket", setup: apiSetup(healthcheckFlags)},
			{name: "doctor", synopsis: doctorSynopsis, setup: setupDoctor},
		},
		entryCommands(),
		bundleCommands(),
		agentCommands(),
		tokenCommands(),
		mintCommands(),
		localAuthorityCommands(),
		upstreamAuthorityCommands(),
		federationCommands(),
		loggerCommands(),
	)
}

// Run runs the spire-server command line args (without the program name) and
// returns the process exit code: 0 success, 1 failure or a group without
// subcommand, 127 unknown command or no command. Help goes to stderr.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, &env{stdin: stdin, stdout: stdout, stderr: stderr}, args)
}

func run(ctx context.Context, e *env, args []string) int {
	t := newTree(commands())
	p := t.parse(args)
	switch {
	case p.version:
		fmt.Fprintln(e.stderr, version.Version)
		return 0
	case p.help && p.sub == "":
		fmt.Fprintln(e.stderr, t.topUsage(""))
		return 0
	}
	node, ok := t.nodes[p.sub]
	if !ok {
		fmt.Fprintln(e.stderr, t.topUsage(""))
		return 127
	}
	if p.help {
		t.help(e, node)
		return 0
	}
	if len(p.topFlags) > 0 {
		fmt.Fprint(e.stderr, "Invalid flags before the subcommand. If these flags are for\n"+
			"the subcommand, please put them after the subcommand.\n\n")
		t.help(e, node)
		return 1
	}
	if node.cmd == nil {
		t.help(e, node)
		return 1
	}
	fs := newFlagSet(node.cmd, e)
	action := node.cmd.setup(fs, e)
	if err := fs.Parse(p.args); err != nil {
		return 1
	}
	return action(ctx)
}

func newFlagSet(c *command, e *env) *flag.FlagSet {
	name := c.flagName
	if name == "" {
		name = c.name
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// node is a command or a group in the tree.
type node struct {
	name string
	cmd  *command // nil for a group
}

type tree struct {
	nodes map[string]*node
}

func newTree(cmds []command) *tree {
	t := &tree{nodes: map[string]*node{}}
	for i := range cmds {
		c := &cmds[i]
		t.nodes[c.name] = &node{name: c.name, cmd: c}
	}
	for _, c := range cmds {
		words := strings.Fields(c.name)
		for i := 1; i < len(words); i++ {
			parent := strings.Join(words[:i], " ")
			if _, ok := t.nodes[parent]; !ok {
				t.nodes[parent] = &node{name: parent}
			}
		}
	}
	return t
}

type parsed struct {
	help, version bool
	topFlags      []string
	sub           string // "" when no command word was given
	args          []string
}

// parse splits args the way SPIRE's CLI framework does: help flags anywhere
// (before "--") ask for help, version flags count only before the command,
// and the command is the longest registered name starting at the first
// non-flag argument, ending at a word boundary.
func (t *tree) parse(args []string) parsed {
	var p parsed
	for i, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "-h" || arg == "-help" || arg == "--help" {
			p.help = true
			continue
		}
		if p.sub == "" {
			if arg == "-v" || arg == "-version" || arg == "--version" {
				p.version = true
				continue
			}
			if arg != "" && arg[0] == '-' {
				p.topFlags = append(p.topFlags, arg)
			}
		}
		if p.sub == "" && arg != "" && arg[0] != '-' {
			p.sub = arg
			search := strings.Join(args[i:], " ")
			if k := t.longestPrefix(search); k != "" && (len(k) == len(search) || search[len(k)] == ' ') {
				p.sub = k
				i += strings.Count(k, " ")
			}
			p.args = args[i+1:]
		}
	}
	return p
}

func (t *tree) longestPrefix(s string) string {
	best := ""
	for k := range t.nodes {
		if strings.HasPrefix(s, k) && len(k) > len(best) {
			best = k
		}
	}
	return best
}

// children returns the immediate subcommands of prefix ("" for the top), sorted.
func (t *tree) children(prefix string) []*node {
	var out []*node
	for k, n := range t.nodes {
		rest := k
		if prefix != "" {
			if !strings.HasPrefix(k, prefix+" ") {
				continue
			}
			rest = k[len(prefix)+1:]
		}
		if rest != "" && !strings.Contains(rest, " ") {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	return out
}

func (n *node) synopsis() string {
	if n.cmd == nil {
		return ""
	}
	return n.cmd.synopsis
}

// topUsage is the usage listing the commands under prefix, without the final
// newline the caller adds.
func (t *tree) topUsage(prefix string) string {
	var b strings.Builder
	b.WriteString("Usage: spire-server [--version] [--help] <command> [<args>]\n\n")
	b.WriteString("Available commands are:\n")
	kids := t.children(prefix)
	width := 0
	for _, k := range kids {
		width = max(width, len(k.name))
	}
	for _, k := range kids {
		fmt.Fprintf(&b, "    %-*s    %s\n", width, k.name, k.synopsis())
	}
	return b.String()
}

// help prints a command's usage (its flags, then "flag: help requested"), or
// for a group the usage of each direct subcommand followed by the list of
// subcommands.
func (t *tree) help(e *env, n *node) {
	if n.cmd != nil {
		fs := newFlagSet(n.cmd, e)
		n.cmd.setup(fs, e)
		err := fs.Parse([]string{"-h"})
		fmt.Fprintln(e.stderr, err)
		return
	}
	kids := t.children(n.name)
	width := 0
	for _, k := range kids {
		width = max(width, len(k.name)-len(n.name)-1)
		if k.cmd != nil {
			fs := newFlagSet(k.cmd, e)
			k.cmd.setup(fs, e)
			_ = fs.Parse([]string{"-h"})
		}
	}
	var b strings.Builder
	b.WriteString("This command is accessed by using one of the subcommands below.")
	if len(kids) > 0 {
		b.WriteString("\n\nSubcommands:")
		for _, k := range kids {
			fmt.Fprintf(&b, "\n    %-*s    %s", width, k.name[len(n.name)+1:], k.synopsis())
		}
	}
	fmt.Fprintln(e.stderr, b.String())
}
