// Package logger implements the spire.api.server.logger.v1 Logger service:
// reading and changing the server's log level at run time (local callers
// only). It owns no logger: it changes the slog.LevelVar the server's
// handler was built with.
package logger

import (
	"context"
	"errors"
	"log/slog"

	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/neural-hive/hive-identity/internal/server/api"
)

// Levels of SPIRE's API that slog has no constant for.
const (
	LevelTrace = slog.LevelDebug - 4
	LevelFatal = slog.LevelError + 4
	LevelPanic = slog.LevelError + 8
)

// Config configures a Service.
type Config struct {
	// Level is the level the server's log handler reads; its value when New
	// is called is the launch level that ResetLogLevel restores.
	Level *slog.LevelVar
}

// Service serves the Logger API. It is safe for concurrent use.
type Service struct {
	loggerv1.UnsafeLoggerServer

	level  *slog.LevelVar
	launch slog.Level
}

// New returns the Logger service.
func New(c Config) (*Service, error) {
	if c.Level == nil {
		return nil, errors.New("logger: level is required")
	}
	return &Service{level: c.Level, launch: c.Level.Level()}, nil
}

// Register registers the service on r.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	loggerv1.RegisterLoggerServer(r, s)
}

// APILevel converts a slog level to the API's, rounding down to the
// nearest named level.
func APILevel(l slog.Level) types.LogLevel {
	switch {
	case l <= LevelTrace:
		return types.LogLevel_TRACE
	case l <= slog.LevelDebug:
		return types.LogLevel_DEBUG
	case l <= slog.LevelInfo:
		return types.LogLevel_INFO
	case l <= slog.LevelWarn:
		return types.LogLevel_WARN
	case l <= slog.LevelError:
		return types.LogLevel_ERROR
	case l <= LevelFatal:
		return types.LogLevel_FATAL
	}
	return types.LogLevel_PANIC
}

// SlogLevel converts an API level; false for UNSPECIFIED and unknown values.
func SlogLevel(l types.LogLevel) (slog.Level, bool) {
	switch l {
	case types.LogLevel_TRACE:
		return LevelTrace, true
	case types.LogLevel_DEBUG:
		return slog.LevelDebug, true
	case types.LogLevel_INFO:
		return slog.LevelInfo, true
	case types.LogLevel_WARN:
		return slog.LevelWarn, true
	case types.LogLevel_ERROR:
		return slog.LevelError, true
	case types.LogLevel_FATAL:
		return LevelFatal, true
	case types.LogLevel_PANIC:
		return LevelPanic, true
	}
	return 0, false
}

func (s *Service) state() *types.Logger {
	return &types.Logger{CurrentLevel: APILevel(s.level.Level()), LaunchLevel: APILevel(s.launch)}
}

// GetLogger returns the current and the launch level.
func (s *Service) GetLogger(ctx context.Context, _ *loggerv1.GetLoggerRequest) (*types.Logger, error) {
	api.Logger(ctx).Info("GetLogger Called")
	return s.state(), nil
}

// SetLogLevel changes the level of the server's logs.
func (s *Service) SetLogLevel(ctx context.Context, req *loggerv1.SetLogLevelRequest) (*types.Logger, error) {
	log := api.Logger(ctx)
	if req.NewLevel == types.LogLevel_UNSPECIFIED {
		return nil, api.MakeErr(log, codes.InvalidArgument, "newLevel value cannot be LogLevel_UNSPECIFIED", nil)
	}
	l, ok := SlogLevel(req.NewLevel)
	if !ok {
		return nil, api.MakeErr(log, codes.InvalidArgument, "unsupported log level", nil)
	}
	log.Info("SetLogLevel Called", slog.String("new_log_level", req.NewLevel.String()))
	s.level.Set(l)
	return s.state(), nil
}

// ResetLogLevel restores the launch level.
func (s *Service) ResetLogLevel(ctx context.Context, _ *loggerv1.ResetLogLevelRequest) (*types.Logger, error) {
	api.Logger(ctx).Info("ResetLogLevel Called", slog.String("launch_log_level", APILevel(s.launch).String()))
	s.level.Set(s.launch)
	return s.state(), nil
}
