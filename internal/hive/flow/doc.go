// Package flow is the wire API of Neural Hive's Flow C ("orquestração de
// execução"): the gRPC services of the service-registry, the worker-agents
// and the orchestrator-dynamic, their message types, their method names (the
// method label of the grpc_auth_* metrics) and the SPIFFE IDs the runbook
// gives the three services.
//
// The services are described by hand-written grpc.ServiceDesc values, not by
// protoc output, and their messages travel as JSON: the codec is forced on
// both sides (ServerCodec on servers, every client stub passes it per call),
// so the content type is application/grpc+json. The shapes are the Go
// structs of this package with their json tags; unknown fields are refused.
//
//	hive.flow.v1.Registry/Register    RegisterRequest   -> Lease            worker-agents only
//	hive.flow.v1.Registry/Heartbeat   HeartbeatRequest  -> Lease            worker-agents only
//	hive.flow.v1.Registry/Deregister  DeregisterRequest -> Empty            worker-agents only
//	hive.flow.v1.Registry/Discover    DiscoverRequest   -> DiscoverResponse orchestrator-dynamic only (step C3)
//	hive.flow.v1.Worker/Execute       Task              -> TaskResult       orchestrator-dynamic only
//	hive.flow.v1.Orchestrator/Submit  SubmitRequest     -> SubmitResponse   JWT-SVID for the orchestrator's ID
//
// Extension: Neural Hive's services, not part of SPIRE. Experimental:
// subject to change.
//
// The package holds no service logic (internal/hive/registry, worker and
// orchestrator do) and no authentication (pkg/spiffegrpc does).
package flow
