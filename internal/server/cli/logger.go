package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

func loggerCommands() []command {
	return []command{
		{name: "logger get", synopsis: "Prints the server's current and launch log levels", setup: apiSetup(loggerFlags("get"))},
		{name: "logger set", synopsis: "Changes the server's log level until the next set or reset", setup: apiSetup(loggerFlags("set"))},
		{name: "logger reset", synopsis: "Puts the server's log level back to the configured one", setup: apiSetup(loggerFlags("reset"))},
	}
}

// logLevelName is the name the pretty output uses (logrus's, as SPIRE prints it).
func logLevelName(l types.LogLevel) (string, bool) {
	switch l {
	case types.LogLevel_PANIC:
		return "panic", true
	case types.LogLevel_FATAL:
		return "fatal", true
	case types.LogLevel_ERROR:
		return "error", true
	case types.LogLevel_WARN:
		return "warning", true
	case types.LogLevel_INFO:
		return "info", true
	case types.LogLevel_DEBUG:
		return "debug", true
	case types.LogLevel_TRACE:
		return "trace", true
	}
	return "", false
}

func parseLogLevel(s string) (types.LogLevel, bool) {
	switch strings.ToLower(s) {
	case "panic":
		return types.LogLevel_PANIC, true
	case "fatal":
		return types.LogLevel_FATAL, true
	case "error":
		return types.LogLevel_ERROR, true
	case "warn", "warning":
		return types.LogLevel_WARN, true
	case "info":
		return types.LogLevel_INFO, true
	case "debug":
		return types.LogLevel_DEBUG, true
	case "trace":
		return types.LogLevel_TRACE, true
	}
	return 0, false
}

func loggerFlags(verb string) func(fs *flag.FlagSet, e *env) apiAction {
	return func(fs *flag.FlagSet, e *env) apiAction {
		var level *string
		if verb == "set" {
			level = fs.String("level", "", "New log level: panic, fatal, error, warn, info, debug or trace")
		}
		output := addOutputFlag(fs)
		return func(ctx context.Context, c *client) error {
			var logger *types.Logger
			var err error
			switch verb {
			case "get":
				if logger, err = c.logger().GetLogger(ctx, &loggerv1.GetLoggerRequest{}); err != nil {
					return fmt.Errorf("error fetching logger: %w", err)
				}
			case "reset":
				if logger, err = c.logger().ResetLogLevel(ctx, &loggerv1.ResetLogLevelRequest{}); err != nil {
					return fmt.Errorf("failed to reset logger: %w", err)
				}
			default:
				if *level == "" {
					return errors.New("a value (-level) must be set")
				}
				l, ok := parseLogLevel(*level)
				if !ok {
					return fmt.Errorf("the value %q is not a valid setting", *level)
				}
				if logger, err = c.logger().SetLogLevel(ctx, &loggerv1.SetLogLevelRequest{NewLevel: l}); err != nil {
					return fmt.Errorf("failed to set log level: %w", err)
				}
			}
			if output.json {
				return printProto(e.stdout, logger)
			}
			current, ok1 := logLevelName(logger.CurrentLevel)
			launch, ok2 := logLevelName(logger.LaunchLevel)
			if !ok1 || !ok2 {
				return errors.New("internal error: returned log level is undefined")
			}
			return e.printf("Logger Level : %s\nLaunch Level : %s\n\n", current, launch)
		}
	}
}
