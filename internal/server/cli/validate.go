package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"

	"github.com/neural-hive/hive-identity/internal/config"
)

const validateSynopsis = "Checks a server configuration file without starting the server"

// setupValidate is `spire-server validate`: it loads the configuration the
// way run does (same flags) and says whether the server could start with it.
// Output as SPIRE 1.13: "SPIRE server configuration file is valid." on
// stdout and exit 0, or "SPIRE server configuration file is invalid: <first
// problem>" on stderr and exit 1. Warnings and unknown keys are logged to
// stdout (or log_file) as SPIRE logs them.
//
// Extension: SPIRE stops at the first problem; when a file has several, the
// SPIRE line is followed by every problem with its location
// ("  server.conf:9:5: could not parse ..."), and the "Unknown configuration
// detected" log line carries the keys' positions (positions=6:5). Plugins,
// plugin_data, health_checks and telemetry are checked too, which SPIRE's
// validate leaves to the server's start.
func setupValidate(fs *flag.FlagSet, e *env) func(ctx context.Context) int {
	flags := registerServerFlags(fs)
	return func(ctx context.Context) int {
		_, logs, err := flags.load(ctx, e)
		if logs != nil {
			defer logs.close()
		}
		if err != nil {
			_ = e.errorf("%s", config.FormatError("SPIRE server configuration file is invalid: ", err))
			return 1
		}
		_ = e.printf("SPIRE server configuration file is valid.\n")
		return 0
	}
}

// serverFlags are the flags of run and validate.
type serverFlags struct {
	configPath string
	expandEnv  bool
	overrides  config.ServerOverrides
}

// registerServerFlags registers SPIRE 1.13's run/validate flags on fs: each
// set flag overrides the file.
func registerServerFlags(fs *flag.FlagSet) *serverFlags {
	f := &serverFlags{}
	o := &f.overrides
	fs.StringVar(&o.BindAddress, "bindAddress", "", "IP address or host name the agent API listens on")
	fs.StringVar(&f.configPath, "config", "", "Server configuration file; conf/server/server.conf when not given")
	fs.StringVar(&o.DataDir, "dataDir", "", "Directory for the server's runtime data")
	fs.BoolVar(&f.expandEnv, "expandEnv", false, "Replace $VAR and ${VAR} in the configuration file with environment values")
	fs.StringVar(&o.LogFile, "logFile", "", "Write logs to this file instead of standard output")
	fs.StringVar(&o.LogFormat, "logFormat", "", "Log format: 'text' or 'json'")
	fs.StringVar(&o.LogLevel, "logLevel", "", "Log level: 'debug', 'info', 'warn', or 'error'")
	fs.BoolVar(&o.LogSourceLocation, "logSourceLocation", false, "Add the source file, line and function to each log record")
	fs.IntVar(&o.BindPort, "serverPort", 0, "TCP port the agent API listens on")
	fs.StringVar(&o.SocketPath, "socketPath", "", "Unix socket to serve the admin API on")
	fs.StringVar(&o.TrustDomain, "trustDomain", "", "Trust domain the server issues identities in")
	return f
}

// logOutput is where the logger writes, and what to close after.
type logOutput struct {
	w    io.Writer
	file *os.File // nil: the command's stdout
}

func (l *logOutput) close() {
	if l.file != nil {
		_ = l.file.Close()
	}
}

// load reads the configuration file named by the flags, applies the flags
// over it and checks it, logging what SPIRE logs about a configuration
// (warnings, unknown keys) to stdout or the log file. A missing or malformed
// file is returned before anything is logged, as SPIRE does. The returned
// logOutput, when not nil, must be closed.
func (f *serverFlags) load(ctx context.Context, e *env) (*loadedServer, *logOutput, error) {
	file, err := config.LoadServer(f.configPath, config.LoadOptions{ExpandEnv: f.expandEnv, Getenv: os.Getenv})
	if err != nil {
		return nil, nil, err
	}
	file.Override(f.overrides)
	s, checkErr := file.Check()

	logCfg := file.LogConfig()
	if s != nil {
		logCfg = s.Log
	}
	out := &logOutput{w: e.stdout}
	if logCfg.File != "" {
		lf, err := os.OpenFile(logCfg.File, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, err
		}
		out = &logOutput{w: lf, file: lf}
	}
	logger, level := logCfg.NewLogger(out.w)
	var warnings []string
	if s != nil {
		warnings = s.Warnings
	}
	config.LogProblems(ctx, logger, warnings, checkErr)
	if checkErr != nil {
		return nil, out, checkErr
	}
	return &loadedServer{cfg: s, logger: logger, level: level}, out, nil
}

// loadedServer is a checked configuration with the logger built from it.
type loadedServer struct {
	cfg    *config.Server
	logger *slog.Logger
	level  *slog.LevelVar
}

// errNoDataStore is SPIRE's error for a server.conf without a DataStore.
var errNoDataStore = errors.New("expecting a DataStore plugin")
