package registry

import (
	"context"
	"errors"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// service is the gRPC binding of the registry: it reads the caller's SPIFFE
// ID that MTLSAuth put in the context and maps the lease table's errors to
// codes.
type service struct{ r *Registry }

var _ flow.RegistryServer = (*service)(nil)

func caller(ctx context.Context) (spiffeid.ID, error) {
	id, ok := spiffegrpc.PeerIDFromContext(ctx)
	if !ok {
		return spiffeid.ID{}, status.Error(codes.Unauthenticated, "no authenticated caller")
	}
	return id, nil
}

func (s *service) Register(ctx context.Context, req *flow.RegisterRequest) (*flow.Lease, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	lease, replaced, err := s.r.leases.register(id, req.Address, req.Capabilities, s.r.cfg.Clock())
	if err != nil {
		return nil, s.errorf(ctx, "Registration refused", id, err)
	}
	s.r.log.Info("Worker registered", "instance_id", lease.InstanceID, telemetry.SPIFFEID, id.String(),
		telemetry.Address, req.Address, "capabilities", req.Capabilities, "replaced", replaced,
		telemetry.ExpiresAt, lease.ExpiresAt.UTC().Format(time.RFC3339))
	return &lease, nil
}

func (s *service) Heartbeat(ctx context.Context, req *flow.HeartbeatRequest) (*flow.Lease, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	lease, err := s.r.leases.heartbeat(id, req.InstanceID, s.r.cfg.Clock())
	if err != nil {
		return nil, s.errorf(ctx, "Heartbeat refused", id, err)
	}
	s.r.log.Debug("Worker heartbeat", "instance_id", lease.InstanceID, telemetry.ExpiresAt, lease.ExpiresAt.UTC().Format(time.RFC3339))
	return &lease, nil
}

func (s *service) Deregister(ctx context.Context, req *flow.DeregisterRequest) (*flow.Empty, error) {
	id, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	in, err := s.r.leases.deregister(id, req.InstanceID, s.r.cfg.Clock())
	if err != nil {
		return nil, s.errorf(ctx, "Deregistration refused", id, err)
	}
	s.r.log.Info("Worker deregistered", "instance_id", in.InstanceID, telemetry.SPIFFEID, in.SPIFFEID, telemetry.Address, in.Address)
	return &flow.Empty{}, nil
}

func (s *service) Discover(ctx context.Context, req *flow.DiscoverRequest) (*flow.DiscoverResponse, error) {
	if !flow.ValidCapability(req.Capability) {
		return nil, status.Errorf(codes.InvalidArgument, "capability %.64q is not [a-z0-9][a-z0-9._-]{0,63}", req.Capability)
	}
	workers := s.r.leases.discover(req.Capability, s.r.cfg.Clock())
	s.r.log.Debug("Workers discovered", "capability", req.Capability, telemetry.Count, len(workers))
	return &flow.DiscoverResponse{Workers: workers}, nil
}

// errorf logs a refused lease operation once and returns its status.
func (s *service) errorf(ctx context.Context, msg string, id spiffeid.ID, err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrNotOwner):
		code = codes.PermissionDenied
	case errors.Is(err, ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrFull):
		code = codes.ResourceExhausted
	}
	s.r.log.WarnContext(ctx, msg, telemetry.SPIFFEID, id.String(), telemetry.Code, code.String(), telemetry.Error, err.Error())
	return status.Error(code, err.Error())
}
