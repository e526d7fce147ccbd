package worker

import (
	"context"
	"slices"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// service is the gRPC binding of the worker's task execution.
type service struct{ w *Worker }

var _ flow.WorkerServer = (*service)(nil)

func (s *service) Execute(ctx context.Context, t *flow.Task) (*flow.TaskResult, error) {
	if !slices.Contains(s.w.cfg.Capabilities, t.Capability) {
		s.w.tasks.WithLabelValues(telemetry.Other, "unsupported").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "worker does not offer capability %.64q", t.Capability)
	}
	start := time.Now()
	out, err := Execute(t.Capability, t.Payload)
	if err != nil {
		s.w.tasks.WithLabelValues(t.Capability, "failure").Inc()
		s.w.log.Error("Task failed", "task_id", t.ID, "capability", t.Capability, telemetry.Error, err.Error())
		return nil, status.Errorf(codes.Internal, "task %s failed", t.ID)
	}
	s.w.tasks.WithLabelValues(t.Capability, "success").Inc()
	caller, _ := spiffegrpc.PeerIDFromContext(ctx)
	s.w.log.Info("Task executed", "task_id", t.ID, "capability", t.Capability, "payload_bytes", len(t.Payload),
		telemetry.CallerID, caller.String(), telemetry.Duration, time.Since(start).String())
	return &flow.TaskResult{TaskID: t.ID, Output: out}, nil
}
