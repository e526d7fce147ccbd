package logger_test

import (
	"context"
	"log/slog"
	"testing"

	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/api/logger"
)

func TestLogger(t *testing.T) {
	ctx := context.Background()
	var level slog.LevelVar
	level.Set(slog.LevelDebug)
	svc, err := logger.New(logger.Config{Level: &level})
	if err != nil {
		t.Fatal(err)
	}
	c := loggerv1.NewLoggerClient(apitest.Serve(t, svc).Conn)

	got, err := c.GetLogger(ctx, &loggerv1.GetLoggerRequest{})
	if err != nil || got.CurrentLevel != types.LogLevel_DEBUG || got.LaunchLevel != types.LogLevel_DEBUG {
		t.Fatalf("get %v %v", got, err)
	}
	got, err = c.SetLogLevel(ctx, &loggerv1.SetLogLevelRequest{NewLevel: types.LogLevel_WARN})
	if err != nil || got.CurrentLevel != types.LogLevel_WARN || level.Level() != slog.LevelWarn {
		t.Fatalf("set %v %v", got, err)
	}
	_, err = c.SetLogLevel(ctx, &loggerv1.SetLogLevelRequest{})
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "newLevel value cannot be LogLevel_UNSPECIFIED" {
		t.Fatalf("unspecified: %v", err)
	}
	_, err = c.SetLogLevel(ctx, &loggerv1.SetLogLevelRequest{NewLevel: 42})
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "unsupported log level" {
		t.Fatalf("unknown: %v", err)
	}
	if level.Level() != slog.LevelWarn {
		t.Fatal("a refused set changed the level")
	}
	got, err = c.ResetLogLevel(ctx, &loggerv1.ResetLogLevelRequest{})
	if err != nil || got.CurrentLevel != types.LogLevel_DEBUG || level.Level() != slog.LevelDebug {
		t.Fatalf("reset %v %v", got, err)
	}
	for _, l := range []types.LogLevel{types.LogLevel_TRACE, types.LogLevel_DEBUG, types.LogLevel_INFO, types.LogLevel_WARN, types.LogLevel_ERROR, types.LogLevel_FATAL, types.LogLevel_PANIC} {
		s, ok := logger.SlogLevel(l)
		if !ok || logger.APILevel(s) != l {
			t.Errorf("level %v does not round trip", l)
		}
	}
}
