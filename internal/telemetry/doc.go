// Package telemetry owns the Prometheus side of hive-identity: the registry
// each process creates (NewRegistry, never the default registry), the HTTP
// listener of the telemetry { Prometheus { host port } } block (Exporter),
// the server and agent metric sets (ServerMetrics, AgentMetrics) with their
// gRPC interceptors, and the attribute keys every log line uses (logkeys.go).
//
// Domain packages do not import this package for metrics: each declares the
// small hook interface it calls, and server.go / agent.go pass a
// *ServerMetrics or *AgentMetrics in. Both are nil-safe, so a nil pointer is
// the no-op default in tests.
//
// Label values are bounded: attestor names, reasons and datastore operations
// come from fixed sets (anything else is reported as "other"), gRPC methods
// from the registered services, codes from the gRPC code list, and
// spiffe_id from the SVIDs the agent holds. No label or value carries a
// token, key or CSR.
//
// The package does not decide what is healthy (package health does) and does
// not count service-to-service authentication (pkg/spiffegrpc does, under
// the runbook's grpc_auth_* names).
package telemetry
