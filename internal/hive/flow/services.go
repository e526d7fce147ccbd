package flow

import (
	"context"
	"strings"

	"google.golang.org/grpc"
)

// Service names.
const (
	RegistryService     = "hive.flow.v1.Registry"
	WorkerService       = "hive.flow.v1.Worker"
	OrchestratorService = "hive.flow.v1.Orchestrator"
)

// Full method names, as they appear in the method label of the auth metrics
// and in authorization rules.
const (
	MethodRegister   = "/" + RegistryService + "/Register"
	MethodHeartbeat  = "/" + RegistryService + "/Heartbeat"
	MethodDeregister = "/" + RegistryService + "/Deregister"
	MethodDiscover   = "/" + RegistryService + "/Discover"
	MethodExecute    = "/" + WorkerService + "/Execute"
	MethodSubmit     = "/" + OrchestratorService + "/Submit"
)

// RegistryServer is implemented by the service-registry.
type RegistryServer interface {
	Register(context.Context, *RegisterRequest) (*Lease, error)
	Heartbeat(context.Context, *HeartbeatRequest) (*Lease, error)
	Deregister(context.Context, *DeregisterRequest) (*Empty, error)
	Discover(context.Context, *DiscoverRequest) (*DiscoverResponse, error)
}

// WorkerServer is implemented by the worker-agents.
type WorkerServer interface {
	Execute(context.Context, *Task) (*TaskResult, error)
}

// OrchestratorServer is implemented by the orchestrator-dynamic.
type OrchestratorServer interface {
	Submit(context.Context, *SubmitRequest) (*SubmitResponse, error)
}

// RegisterRegistry registers srv on s. s needs ServerCodec.
func RegisterRegistry(s grpc.ServiceRegistrar, srv RegistryServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: RegistryService,
		HandlerType: (*RegistryServer)(nil),
		Methods: []grpc.MethodDesc{
			unary(MethodRegister, RegistryServer.Register),
			unary(MethodHeartbeat, RegistryServer.Heartbeat),
			unary(MethodDeregister, RegistryServer.Deregister),
			unary(MethodDiscover, RegistryServer.Discover),
		},
		Metadata: "internal/hive/flow",
	}, srv)
}

// RegisterWorker registers srv on s. s needs ServerCodec.
func RegisterWorker(s grpc.ServiceRegistrar, srv WorkerServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: WorkerService,
		HandlerType: (*WorkerServer)(nil),
		Methods:     []grpc.MethodDesc{unary(MethodExecute, WorkerServer.Execute)},
		Metadata:    "internal/hive/flow",
	}, srv)
}

// RegisterOrchestrator registers srv on s. s needs ServerCodec.
func RegisterOrchestrator(s grpc.ServiceRegistrar, srv OrchestratorServer) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: OrchestratorService,
		HandlerType: (*OrchestratorServer)(nil),
		Methods:     []grpc.MethodDesc{unary(MethodSubmit, OrchestratorServer.Submit)},
		Metadata:    "internal/hive/flow",
	}, srv)
}

// unary builds the method descriptor of fullMethod, decoding the request
// before the interceptors run, as protoc-generated code does.
func unary[S, Req, Resp any](fullMethod string, call func(S, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	name := fullMethod[strings.LastIndexByte(fullMethod, '/')+1:]
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			req := new(Req)
			if err := dec(req); err != nil {
				return nil, err
			}
			handler := func(ctx context.Context, req any) (any, error) {
				return call(srv.(S), ctx, req.(*Req))
			}
			if interceptor == nil {
				return handler(ctx, req)
			}
			return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}, handler)
		},
	}
}

// RegistryClient calls a service-registry. It is safe for concurrent use.
type RegistryClient struct{ cc grpc.ClientConnInterface }

// NewRegistryClient returns a client that calls over cc.
func NewRegistryClient(cc grpc.ClientConnInterface) RegistryClient { return RegistryClient{cc} }

// Register calls Registry.Register.
func (c RegistryClient) Register(ctx context.Context, req *RegisterRequest, opts ...grpc.CallOption) (*Lease, error) {
	return invoke[Lease](ctx, c.cc, MethodRegister, req, opts)
}

// Heartbeat calls Registry.Heartbeat.
func (c RegistryClient) Heartbeat(ctx context.Context, req *HeartbeatRequest, opts ...grpc.CallOption) (*Lease, error) {
	return invoke[Lease](ctx, c.cc, MethodHeartbeat, req, opts)
}

// Deregister calls Registry.Deregister.
func (c RegistryClient) Deregister(ctx context.Context, req *DeregisterRequest, opts ...grpc.CallOption) (*Empty, error) {
	return invoke[Empty](ctx, c.cc, MethodDeregister, req, opts)
}

// Discover calls Registry.Discover.
func (c RegistryClient) Discover(ctx context.Context, req *DiscoverRequest, opts ...grpc.CallOption) (*DiscoverResponse, error) {
	return invoke[DiscoverResponse](ctx, c.cc, MethodDiscover, req, opts)
}

// WorkerClient calls a worker. It is safe for concurrent use.
type WorkerClient struct{ cc grpc.ClientConnInterface }

// NewWorkerClient returns a client that calls over cc.
func NewWorkerClient(cc grpc.ClientConnInterface) WorkerClient { return WorkerClient{cc} }

// Execute calls Worker.Execute.
func (c WorkerClient) Execute(ctx context.Context, req *Task, opts ...grpc.CallOption) (*TaskResult, error) {
	return invoke[TaskResult](ctx, c.cc, MethodExecute, req, opts)
}

// OrchestratorClient calls an orchestrator. It is safe for concurrent use.
type OrchestratorClient struct{ cc grpc.ClientConnInterface }

// NewOrchestratorClient returns a client that calls over cc.
func NewOrchestratorClient(cc grpc.ClientConnInterface) OrchestratorClient {
	return OrchestratorClient{cc}
}

// Submit calls Orchestrator.Submit.
func (c OrchestratorClient) Submit(ctx context.Context, req *SubmitRequest, opts ...grpc.CallOption) (*SubmitResponse, error) {
	return invoke[SubmitResponse](ctx, c.cc, MethodSubmit, req, opts)
}

func invoke[Resp any](ctx context.Context, cc grpc.ClientConnInterface, method string, req any, opts []grpc.CallOption) (*Resp, error) {
	resp := new(Resp)
	if err := cc.Invoke(ctx, method, req, resp, append(opts, CallCodec())...); err != nil {
		return nil, err
	}
	return resp, nil
}
