package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LevelTrace is logrus' "trace" level, below DEBUG.
const LevelTrace = slog.LevelDebug - 4

// Log is the typed logging configuration of a server or agent
// (log_level, log_format, log_file, log_source_location).
type Log struct {
	// Level is the minimum level logged; default INFO.
	Level slog.Level
	// Format is "text" (default) or "json".
	Format string
	// File is where logs go; empty means standard output, SPIRE's default.
	File string
	// SourceLocation adds the source file and line to each record.
	SourceLocation bool
}

// ParseLogLevel parses a level the way SPIRE (logrus) does: case-insensitive
// "trace", "debug", "info", "warn"/"warning", "error", "fatal", "panic".
// fatal and panic map to levels above ERROR.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "fatal":
		return slog.LevelError + 4, nil
	case "panic":
		return slog.LevelError + 8, nil
	}
	return 0, fmt.Errorf("not a valid logrus Level: %q", s)
}

// LevelName is the lower-case name SPIRE prints for a level ("debug",
// "info", "warning", "error"), as in its log lines and `logger get`.
func LevelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warning"
	case l < slog.LevelError+4:
		return "error"
	case l < slog.LevelError+8:
		return "fatal"
	}
	return "panic"
}

// parseLog checks a log level and format the way SPIRE builds its logger;
// the error is SPIRE's "could not start logger: ..." text.
func parseLog(level, format string) (Log, error) {
	l := Log{Level: slog.LevelInfo, Format: "text"}
	if level != "" {
		lv, err := ParseLogLevel(level)
		if err != nil {
			return l, fmt.Errorf("could not start logger: %w", err)
		}
		l.Level = lv
	}
	switch strings.ToLower(format) {
	case "", "text":
	case "json":
		l.Format = "json"
	default:
		return l, fmt.Errorf("could not start logger: unknown logger format: %q", format)
	}
	return l, nil
}

// NewLogger builds the logger described by l, writing to w (the caller opens
// l.File, or passes standard output). Levels are named as SPIRE names them
// (level=info, level=warning). The returned LevelVar changes the level at
// run time (`logger set`). The logger is safe for concurrent use.
func (l Log) NewLogger(w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(l.Level)
	opts := &slog.HandlerOptions{
		Level:     level,
		AddSource: l.SourceLocation,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				if lv, ok := a.Value.Any().(slog.Level); ok {
					return slog.String(slog.LevelKey, LevelName(lv))
				}
			}
			return a
		},
	}
	var h slog.Handler
	if l.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h), level
}

// LogWarnings logs each warning at WARN, as SPIRE logs configuration
// warnings once the logger exists.
func LogWarnings(ctx context.Context, logger *slog.Logger, warnings []string) {
	for _, w := range warnings {
		logger.WarnContext(ctx, w)
	}
}

// LogProblems logs what SPIRE logs about a configuration: each warning at
// WARN, then, when err is an *Error with unknown keys, one
// "Unknown configuration detected" error per section with its keys (sorted,
// comma-separated), the section, and their line:column positions.
func LogProblems(ctx context.Context, logger *slog.Logger, warnings []string, err error) {
	var ce *Error
	if errors.As(err, &ce) {
		warnings = append(warnings, ce.Warnings...)
	}
	LogWarnings(ctx, logger, warnings)
	if ce == nil {
		return
	}
	for _, u := range ce.UnknownKeys() {
		logger.ErrorContext(ctx, "Unknown configuration detected",
			slog.String("keys", strings.Join(u.Keys, ",")),
			slog.String("section", u.Section),
			slog.String("positions", u.Positions()))
	}
}

// log checks log_level and log_format of block ("server" or "agent") as
// SPIRE's logger does and returns the typed Log.
func (c *checker) log(block, level, format, file string, sourceLocation bool) Log {
	l, err := parseLog(level, format)
	if err != nil {
		path := block + ".log_level"
		if _, lerr := ParseLogLevel(level); level == "" || lerr == nil {
			path = block + ".log_format"
		}
		c.add(path, "%v", err)
	}
	l.File = file
	l.SourceLocation = sourceLocation
	return l
}

// bestEffortLog is the logging configuration asked for, with defaults for
// values that do not parse.
func bestEffortLog(level, format, file string, source bool) Log {
	l, err := parseLog(level, "")
	if err != nil {
		l.Level = slog.LevelInfo
	}
	if f, err := parseLog("", format); err == nil {
		l.Format = f.Format
	}
	l.File = file
	l.SourceLocation = source
	return l
}

// LogConfig returns the logging configuration the file (with overrides)
// asks for, defaults standing in for values that do not parse. A CLI uses
// it to log a configuration's problems when Check fails.
func (f *ServerFile) LogConfig() Log {
	if f.Server == nil {
		return bestEffortLog("", "", "", false)
	}
	return bestEffortLog(f.Server.LogLevel, f.Server.LogFormat, f.Server.LogFile, f.Server.LogSourceLocation)
}

// LogConfig returns the logging configuration the file (with overrides)
// asks for, defaults standing in for values that do not parse.
func (f *AgentFile) LogConfig() Log {
	if f.Agent == nil {
		return bestEffortLog("", "", "", false)
	}
	return bestEffortLog(f.Agent.LogLevel, f.Agent.LogFormat, f.Agent.LogFile, f.Agent.LogSourceLocation)
}
