// Package workloadapi serves the SPIFFE Workload API on the agent's unix
// socket: the SpiffeWorkloadAPI gRPC service of go-spiffe's proto
// (FetchX509SVID, FetchX509Bundles, FetchJWTSVID, FetchJWTBundles,
// ValidateJWTSVID; the WIT-SVID RPCs return Unimplemented), grpc.health.v1
// (spire-agent healthcheck), gRPC reflection, and, on the same socket,
// HTTP/1.1 GET /v1/spiffe/workload/x509svid (Extension: the runbook's JSON
// view of the caller's certificates, never a key).
//
// Each connection is classified by its first bytes (HTTP/2 preface or
// not). Callers are identified by the kernel (SO_PEERCRED) when the
// connection is accepted, attested by PID on every call, and refused if
// the process behind the PID changed in between (PID reuse). Every
// SpiffeWorkloadAPI call must carry the "workload.spiffe.io: true" header.
//
// The package reads identities from the agent's cache and selectors from
// the workload attestors through the Cache and Attestor interfaces; it
// does not sign anything itself.
package workloadapi
