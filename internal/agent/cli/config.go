package cli

import (
	"context"
	"log/slog"
	"os"

	"github.com/neural-hive/hive-identity/internal/config"
)

// overrides returns the flags that override agent.conf.
func (f *runFlags) overrides() config.AgentOverrides {
	return config.AgentOverrides{
		AllowUnauthenticatedVerifiers: f.AllowUnauthenticatedVerifiers,
		DataDir:                       f.DataDir,
		InsecureBootstrap:             f.InsecureBootstrap,
		JoinToken:                     f.JoinToken,
		JoinTokenFile:                 f.JoinTokenFile,
		LogFile:                       f.LogFile,
		LogFormat:                     f.LogFormat,
		LogLevel:                      f.LogLevel,
		LogSourceLocation:             f.LogSourceLocation,
		RebootstrapDelay:              f.RebootstrapDelay,
		RebootstrapMode:               f.RebootstrapMode,
		RetryBootstrap:                f.RetryBootstrap,
		ServerAddress:                 f.ServerAddress,
		ServerPort:                    f.ServerPort,
		SocketPath:                    f.SocketPath,
		TrustBundlePath:               f.TrustBundlePath,
		TrustBundleFormat:             f.TrustBundleFormat,
		TrustBundleURL:                f.TrustBundleURL,
		TrustDomain:                   f.TrustDomain,
	}
}

// loadedAgent is a checked agent configuration with the logger built from it.
type loadedAgent struct {
	cfg    *config.Agent
	logger *slog.Logger
	level  *slog.LevelVar // changes the log level at run time
}

// logOutput is where the logger writes (the command's stdout, as SPIRE's
// agent logs to stdout, or the log file) and what to close afterwards.
type logOutput struct {
	file *os.File // nil: stdout
}

func (l *logOutput) close() {
	if l != nil && l.file != nil {
		_ = l.file.Close()
	}
}

// load reads agent.conf as the flags say (-config, -expandEnv), applies the
// flags over it and checks it. What SPIRE logs about a configuration
// (warnings, unknown keys) goes to the logger, on stdout or the log file. A
// missing or undecodable file is returned before anything is logged, as
// SPIRE does. The returned logOutput, when not nil, must be closed.
func (f *runFlags) load(ctx context.Context, e *env) (*loadedAgent, *logOutput, error) {
	file, err := config.LoadAgent(f.ConfigPath, config.LoadOptions{ExpandEnv: f.ExpandEnv, Getenv: os.Getenv})
	if err != nil {
		return nil, nil, err
	}
	file.Override(f.overrides())
	cfg, checkErr := file.Check()

	logCfg := file.LogConfig()
	if cfg != nil {
		logCfg = cfg.Log
	}
	out := &logOutput{}
	w := e.stdout
	if logCfg.File != "" {
		lf, err := os.OpenFile(logCfg.File, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, err
		}
		out.file, w = lf, lf
	}
	logger, level := logCfg.NewLogger(w)
	var warnings []string
	if cfg != nil {
		warnings = cfg.Warnings
	}
	config.LogProblems(ctx, logger, warnings, checkErr)
	if checkErr != nil {
		return nil, out, checkErr
	}
	return &loadedAgent{cfg: cfg, logger: logger, level: level}, out, nil
}
