package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/neural-hive/hive-identity/internal/config"
)

// defaultConfigPath is the agent configuration file read when -config is not given.
const defaultConfigPath = "conf/agent/agent.conf"

// runFlags are the command-line flags of `run` and `validate`. They override
// the configuration file's `agent` block; zero values mean "not given"
// (RetryBootstrap is nil unless the flag was given, since it defaults to true).
type runFlags struct {
	ConfigPath                    string
	ExpandEnv                     bool
	DataDir                       string
	JoinToken                     string
	JoinTokenFile                 string
	LogFile                       string
	LogFormat                     string
	LogLevel                      string
	LogSourceLocation             bool
	ServerAddress                 string
	ServerPort                    int
	SocketPath                    string
	TrustDomain                   string
	TrustBundlePath               string
	TrustBundleURL                string
	TrustBundleFormat             string
	AllowUnauthenticatedVerifiers bool
	InsecureBootstrap             bool
	RetryBootstrap                *bool
	RebootstrapMode               string
	RebootstrapDelay              string
}

// newRunFlagSet returns the flag set of `run` and `validate` (the same flags,
// under the command's name) and the flags it fills; call finish after Parse.
func newRunFlagSet(e *env, name string) (fs *flag.FlagSet, f *runFlags, finish func()) {
	fs = newFlagSet(name, e.stderr)
	f = &runFlags{}
	retry := false
	fs.StringVar(&f.ConfigPath, "config", defaultConfigPath, "Agent configuration file (HCL)")
	fs.BoolVar(&f.ExpandEnv, "expandEnv", false, "Replace $VAR and ${VAR} in the configuration file with environment values")
	fs.StringVar(&f.DataDir, "dataDir", "", "Directory for the agent's SVID, keys and other state")
	fs.StringVar(&f.JoinToken, "joinToken", "", "Join token made by the server (token generate), used once to attest")
	fs.StringVar(&f.JoinTokenFile, "joinTokenFile", "", "File holding the join token")
	fs.StringVar(&f.LogFile, "logFile", "", "Write logs to this file instead of stderr")
	fs.StringVar(&f.LogFormat, "logFormat", "", "Log format: text or json")
	fs.StringVar(&f.LogLevel, "logLevel", "", "Log level: debug, info, warn or error")
	fs.BoolVar(&f.LogSourceLocation, "logSourceLocation", false, "Add the source file, line and function to log records")
	fs.StringVar(&f.ServerAddress, "serverAddress", "", "Host name or IP address of the server")
	fs.IntVar(&f.ServerPort, "serverPort", 0, "TCP port of the server")
	fs.StringVar(&f.SocketPath, "socketPath", "", "Unix socket to serve the Workload API on")
	fs.StringVar(&f.TrustDomain, "trustDomain", "", "Trust domain of the agent")
	fs.StringVar(&f.TrustBundlePath, "trustBundle", "", "File with the server's CA bundle for the first connection")
	fs.StringVar(&f.TrustBundleURL, "trustBundleUrl", "", "HTTPS URL to download the server's CA bundle from")
	fs.StringVar(&f.TrustBundleFormat, "trustBundleFormat", "", "Format of that bundle: pem or spiffe")
	fs.BoolVar(&f.AllowUnauthenticatedVerifiers, "allowUnauthenticatedVerifiers", false, "Let callers with no registered identity fetch X.509 bundles")
	fs.BoolVar(&f.InsecureBootstrap, "insecureBootstrap", false, "Trust the server on first connection without a bundle (unsafe)")
	fs.BoolVar(&retry, "retryBootstrap", true, "Retry the first attestation with backoff when it fails")
	fs.StringVar(&f.RebootstrapMode, "rebootstrapMode", "", "When to bootstrap again after the server's CA changed: never, auto or always")
	fs.StringVar(&f.RebootstrapDelay, "rebootstrapDelay", "", "How long to see a mismatching server certificate before bootstrapping again")
	finish = func() {
		fs.Visit(func(fl *flag.Flag) {
			if fl.Name == "retryBootstrap" {
				f.RetryBootstrap = &retry
			}
		})
	}
	return fs, f, finish
}

// runCommand is `spire-agent run`: it loads agent.conf (the flags override
// the file), builds the logger, prepares the socket directories and umask as
// SPIRE does, and runs the agent with startAgent until ctx is cancelled
// (SIGINT/SIGTERM). A configuration error is printed on stderr as SPIRE
// prints it (the bare message, then each problem with its location when
// there are several), exit 1; an agent failure is logged as "Agent crashed",
// exit 1; a clean stop logs "Agent stopped gracefully", exit 0.
type runCommand struct {
	e      *env
	fs     *flag.FlagSet
	flags  *runFlags
	finish func()
}

func newRunCommand(e *env) command {
	c := &runCommand{e: e}
	c.fs, c.flags, c.finish = newRunFlagSet(e, "run")
	return c
}

func (c *runCommand) synopsis() string { return "Starts the agent" }

func (c *runCommand) help() string {
	printUsage(c.fs)
	return flag.ErrHelp.Error()
}

func (c *runCommand) run(ctx context.Context, args []string) int {
	if err := c.fs.Parse(args); err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	c.finish()
	loaded, logs, err := c.flags.load(ctx, c.e)
	defer logs.close()
	if err != nil {
		_, _ = fmt.Fprint(c.e.stderr, config.FormatError("", err))
		return exitFailure
	}
	if err := prepareEndpoints(ctx, loaded); err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	err = startAgent(ctx, loaded)
	if err != nil {
		loaded.logger.ErrorContext(ctx, "Agent crashed", slog.Any("error", err))
		return exitFailure
	}
	loaded.logger.InfoContext(ctx, "Agent stopped gracefully")
	return exitOK
}

// minimumUmask keeps the files the agent creates from being group-writable
// or readable by others, as SPIRE does.
const minimumUmask = 0o027

// prepareEndpoints creates the directories of the Workload API and admin
// sockets (0755) when missing and raises the process umask to at least
// minimumUmask, logging what it does, as SPIRE's run does before starting.
func prepareEndpoints(ctx context.Context, a *loadedAgent) error {
	for _, sock := range []struct{ path, msg string }{
		{a.cfg.SocketPath, "Creating spire agent UDS directory"},
		{a.cfg.AdminSocketPath, "Creating admin UDS directory"},
	} {
		if sock.path == "" {
			continue
		}
		dir := filepath.Dir(sock.path)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			a.logger.InfoContext(ctx, sock.msg, slog.String("dir", dir))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
	}
	current := syscall.Umask(minimumUmask)
	if current&minimumUmask != minimumUmask {
		a.logger.WarnContext(ctx, "Current umask is too permissive; raising it",
			slog.String("umask", fmt.Sprintf("%#04o", current)),
			slog.String("new_umask", fmt.Sprintf("%#04o", current|minimumUmask)))
	}
	syscall.Umask(current | minimumUmask)
	return nil
}
