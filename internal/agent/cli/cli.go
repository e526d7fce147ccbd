package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/neural-hive/hive-identity/internal/version"
)

// Exit codes of the command line, as SPIRE's (mitchellh/cli based) CLI returns them.
const (
	exitOK      = 0
	exitFailure = 1
	// exitUnknownCommand is returned for no arguments or an unknown command,
	// after the top-level usage.
	exitUnknownCommand = 127
	// exitShowHelp is returned by a command's run to ask the dispatcher to
	// print the command's help and exit with exitFailure.
	exitShowHelp = -1
)

// parentHelp is what a command group without its own implementation (such as
// `api`) prints above its subcommand list.
const parentHelp = "This command is accessed by using one of the subcommands below."

// Run runs the spire-agent command line and returns the process exit code.
// args excludes the program name. Output goes to stdout, errors and help to
// stderr, as SPIRE 1.13's agent CLI does; errors are printed bare (no
// "Error: " prefix). Cancelling ctx (the binary cancels it on SIGINT and
// SIGTERM) stops `api watch` and `run`, and aborts pending Workload API calls.
// stdin is currently unused and may be nil.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	return e.run(ctx, args)
}

// env is what commands read from and write to.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// now stamps response times and is the time at which `api fetch x509`
	// verifies SVIDs; tests fix it.
	now func() time.Time
}

func (e *env) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(e.stdout, format, args...)
}

func (e *env) errorln(args ...any) {
	_, _ = fmt.Fprintln(e.stderr, args...)
}

// command is one runnable entry of the registry.
type command interface {
	// synopsis is the one-line description shown in command lists.
	synopsis() string
	// help prints the command's flag usage on stderr, if it has flags, and
	// returns the text to print after it (SPIRE prints "flag: help requested"
	// for some commands and nothing for others).
	help() string
	// run runs the command with the arguments that follow its name and
	// returns the exit code, or exitShowHelp.
	run(ctx context.Context, args []string) int
}

// factory creates a fresh command bound to an env.
type factory func(e *env) command

// registry maps full command names ("api fetch x509") to their factories,
// including the command groups that only list their subcommands ("api",
// "api validate").
type registry map[string]factory

func newRegistry() registry {
	r := registry{
		"api fetch":        newFetchX509Command, // SPIRE runs `fetch x509` for a bare `api fetch`
		"api fetch x509":   newFetchX509Command,
		"api fetch jwt":    newFetchJWTCommand,
		"api validate jwt": newValidateJWTCommand,
		"api watch":        newWatchCommand,
		"doctor":           newDoctorCommand,
		"healthcheck":      newHealthcheckCommand,
		"run":              newRunCommand,
		"validate":         newValidateCommand,
	}
	for name := range r {
		for i := strings.LastIndexByte(name, ' '); i > 0; i = strings.LastIndexByte(name[:i], ' ') {
			if _, ok := r[name[:i]]; !ok {
				r[name[:i]] = newParentCommand
			}
		}
	}
	return r
}

// children returns the names of the immediate subcommands of parent ("" for
// the top level), sorted.
func (r registry) children(parent string) []string {
	prefix := parent
	if prefix != "" {
		prefix += " "
	}
	var names []string
	for name := range r {
		if rest, ok := strings.CutPrefix(name, prefix); ok && rest != "" && !strings.Contains(rest, " ") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// invocation is a parsed command line.
type invocation struct {
	name     string   // command name, possibly nested; "" when none was given
	args     []string // arguments after the command name
	help     bool     // -h, -help or --help anywhere before "--"
	version  bool     // -v, -version or --version before the command name
	topFlags []string // other flags before the command name
}

// parseInvocation splits args into the command and its arguments the way
// SPIRE's CLI does: the command is the longest registered name that the
// arguments start with word for word, or else the first non-flag argument.
func (r registry) parseInvocation(args []string) invocation {
	var inv invocation
	found := false
	for i, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "-h" || arg == "-help" || arg == "--help" {
			inv.help = true
			continue
		}
		if found || arg == "" {
			continue
		}
		if arg[0] == '-' {
			if arg == "-v" || arg == "-version" || arg == "--version" {
				inv.version = true
			} else {
				inv.topFlags = append(inv.topFlags, arg)
			}
			continue
		}
		found = true
		inv.name = arg
		rest := args[i+1:]
		if name := r.longestPrefix(strings.Join(args[i:], " ")); name != "" {
			inv.name = name
			rest = args[i+1+strings.Count(name, " "):]
		}
		inv.args = rest
	}
	return inv
}

// longestPrefix returns the longest registered name that line starts with,
// if it ends at a word boundary of line; otherwise "".
func (r registry) longestPrefix(line string) string {
	best := ""
	for name := range r {
		if len(name) > len(best) && strings.HasPrefix(line, name) {
			best = name
		}
	}
	if best == "" || (len(line) > len(best) && line[len(best)] != ' ') {
		return ""
	}
	return best
}

func (e *env) run(ctx context.Context, args []string) int {
	r := newRegistry()
	inv := r.parseInvocation(args)
	if inv.version {
		_, _ = fmt.Fprintln(e.stderr, version.Version)
		return exitOK
	}
	if inv.help && inv.name == "" {
		e.printUsage(r)
		return exitOK
	}
	newCmd, ok := r[inv.name]
	if !ok {
		e.printUsage(r)
		return exitUnknownCommand
	}
	cmd := newCmd(e)
	if inv.help {
		e.printCommandHelp(r, inv.name, cmd)
		return exitOK
	}
	if len(inv.topFlags) > 0 {
		_, _ = io.WriteString(e.stderr, "Invalid flags before the subcommand. If these flags are for\n"+
			"the subcommand, please put them after the subcommand.\n\n")
		e.printCommandHelp(r, inv.name, cmd)
		return exitFailure
	}
	code := cmd.run(ctx, inv.args)
	if code == exitShowHelp {
		e.printCommandHelp(r, inv.name, cmd)
		return exitFailure
	}
	return code
}

// printUsage prints the top-level usage: the binary's synopsis and its
// commands, each name padded to the longest.
func (e *env) printUsage(r registry) {
	names := r.children("")
	width := 0
	for _, name := range names {
		width = max(width, len(name))
	}
	var b strings.Builder
	b.WriteString("Usage: spire-agent [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n")
	for _, name := range names {
		fmt.Fprintf(&b, "    %-*s    %s\n", width, name, r[name](e).synopsis())
	}
	b.WriteString("\n")
	_, _ = io.WriteString(e.stderr, b.String())
}

// printCommandHelp prints the help of the named command: its own help (flag
// usage first), then, for a command with subcommands, each subcommand's flag
// usage followed by the list of subcommands with their synopses.
func (e *env) printCommandHelp(r registry, name string, cmd command) {
	var b strings.Builder
	b.WriteString(cmd.help())
	if subs := r.children(name); len(subs) > 0 {
		width := 0
		for _, sub := range subs {
			width = max(width, len(sub))
		}
		b.WriteString("\n\nSubcommands:")
		for _, sub := range subs {
			c := r[sub](e)
			_ = c.help() // SPIRE prints every subcommand's flag usage here
			short := sub[strings.LastIndexByte(sub, ' ')+1:]
			fmt.Fprintf(&b, "\n    %s%s    %s", short, strings.Repeat(" ", width-len(sub)), c.synopsis())
		}
	}
	b.WriteString("\n")
	_, _ = io.WriteString(e.stderr, b.String())
}

// parentCommand is a command group such as `api`: it only lists its subcommands.
type parentCommand struct{}

func newParentCommand(*env) command { return parentCommand{} }

func (parentCommand) synopsis() string                  { return "" }
func (parentCommand) help() string                      { return parentHelp }
func (parentCommand) run(context.Context, []string) int { return exitShowHelp }
