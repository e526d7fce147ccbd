package orchestrator

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// service is the gRPC binding of Flow C's entry point.
type service struct{ o *Orchestrator }

var _ flow.OrchestratorServer = (*service)(nil)

// Submit runs one task through Flow C: C3 discovery, then dispatch.
func (s *service) Submit(ctx context.Context, req *flow.SubmitRequest) (*flow.SubmitResponse, error) {
	o := s.o
	submitter, _ := spiffegrpc.PeerIDFromContext(ctx)
	switch {
	case !flow.ValidCapability(req.Capability):
		o.tasks.WithLabelValues("invalid").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "capability %.64q is not [a-z0-9][a-z0-9._-]{0,63}", req.Capability)
	case len(req.Payload) > MaxPayload:
		o.tasks.WithLabelValues("invalid").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "payload of %d bytes exceeds %d", len(req.Payload), MaxPayload)
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.DispatchTimeout)
	defer cancel()
	task := &flow.Task{ID: rand.Text(), Capability: req.Capability, Payload: req.Payload}
	log := o.log.With("task_id", task.ID, "capability", task.Capability, telemetry.CallerID, submitter.String())

	start := time.Now()
	found, err := o.registry.Discover(ctx, &flow.DiscoverRequest{Capability: req.Capability})
	discover := time.Since(start)
	if err != nil {
		o.tasks.WithLabelValues("discovery_failed").Inc()
		st := status.Convert(err)
		log.Error("Discovery at the service registry failed (C3)", telemetry.Code, st.Code().String(), telemetry.Error, st.Message())
		return nil, status.Errorf(codes.Unavailable, "C3: discovery at the service registry failed: %s: %s", st.Code(), st.Message())
	}
	if len(found.Workers) == 0 {
		o.tasks.WithLabelValues("no_worker").Inc()
		log.Warn("No worker for the task (C3)")
		return nil, status.Errorf(codes.FailedPrecondition, "C3: no worker registered for capability %q", req.Capability)
	}

	n := len(found.Workers)
	first := int(o.next.Add(1) % uint64(n))
	var lastErr error
	for i := range min(n, maxAttempts) {
		in := found.Workers[(first+i)%n]
		if in.SPIFFEID != o.cfg.WorkerID.String() {
			log.Warn("Skipping worker registered under another SPIFFE ID", telemetry.SPIFFEID, in.SPIFFEID, telemetry.Address, in.Address)
			continue
		}
		dispatchStart := time.Now()
		res, err := o.dispatch(ctx, in, task)
		if err == nil {
			o.tasks.WithLabelValues("success").Inc()
			dispatch := time.Since(dispatchStart)
			log.Info("Task done", "instance_id", in.InstanceID, telemetry.Address, in.Address,
				"discover", discover.String(), "dispatch", dispatch.String())
			return &flow.SubmitResponse{TaskID: task.ID, Output: res.Output, Worker: in, Submitter: submitter.String(),
				Discover: discover, Dispatch: dispatch}, nil
		}
		lastErr = err
		st := status.Convert(err)
		log.Warn("Dispatch failed", "instance_id", in.InstanceID, telemetry.Address, in.Address,
			telemetry.Code, st.Code().String(), telemetry.Error, st.Message())
		if st.Code() != codes.Unavailable || ctx.Err() != nil {
			break
		}
		o.dropWorkerConn(in.Address)
	}
	o.tasks.WithLabelValues("dispatch_failed").Inc()
	if lastErr == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "C3: no worker with SPIFFE ID %s for capability %q", o.cfg.WorkerID, req.Capability)
	}
	// The worker's refusal of the orchestrator is not the submitter's
	// fault: only a bad task keeps its code.
	st := status.Convert(lastErr)
	code := codes.Unavailable
	if st.Code() == codes.InvalidArgument || st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled {
		code = st.Code()
	}
	return nil, status.Errorf(code, "dispatch to a worker failed: %s: %s", st.Code(), st.Message())
}

func (o *Orchestrator) dispatch(ctx context.Context, in flow.Instance, task *flow.Task) (*flow.TaskResult, error) {
	conn, err := o.workerConn(in.Address)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return flow.NewWorkerClient(conn).Execute(ctx, task)
}
