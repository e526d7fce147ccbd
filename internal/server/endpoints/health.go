package endpoints

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/neural-hive/hive-identity/internal/server/api"
)

// health is the grpc.health.v1 service of the server, on the admin socket
// only (SPIRE's policy allows only local callers). Check reports SERVING when the server can serve; per-service
// health is not supported. Watch and List are Unimplemented, as in SPIRE.
type health struct {
	grpc_health_v1.UnimplementedHealthServer
	check func(ctx context.Context) error
}

func (h *health) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	log := api.Logger(ctx)
	if req.Service != "" {
		return nil, api.MakeErr(log, codes.InvalidArgument, "per-service health is not supported", nil)
	}
	st := grpc_health_v1.HealthCheckResponse_SERVING
	if h.check != nil {
		if err := h.check(ctx); err != nil {
			log.Warn("Health check failed", slog.String("reason", err.Error()))
			st = grpc_health_v1.HealthCheckResponse_NOT_SERVING
		}
	}
	return &grpc_health_v1.HealthCheckResponse{Status: st}, nil
}
