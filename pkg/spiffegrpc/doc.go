// Package spiffegrpc authenticates and authorizes gRPC calls between
// services by SPIFFE identity, on top of go-spiffe v2: its sources
// (workloadapi.X509Source, JWTSource, BundleSource, or static SVIDs and
// bundles), tlsconfig and grpccredentials. It has no Workload API client of
// its own.
//
// Servers pick one or both of:
//
//   - MTLSAuth: mutual TLS with X509-SVIDs. The server presents the
//     current SVID of its source, verifies the client's X509-SVID against the
//     bundle of the client's trust domain, and refuses calls of clients that
//     fail verification. SVID and bundle rotation take effect on the next
//     handshake, with no restart.
//   - JWTAuth: a JWT-SVID bearer token on each call, validated locally
//     against JWT bundles (no round trip per call).
//
// Both then ask an Authorizer (exact ID, one of a set, trust domain, path
// prefix, per-method rules, or any func) and put the authenticated ID in
// the call's context (PeerIDFromContext). A missing or invalid identity is
// refused with codes.Unauthenticated, a valid identity that the policy
// refuses with codes.PermissionDenied; each refusal is logged at warn level
// as "Auth refused" with the method, the peer's SPIFFE ID (as far as
// known) and a Reason, never with a token. Metrics (NewMetrics) count
// attempts and failures under the Neural Hive runbook's names:
// grpc_auth_attempts_total, grpc_auth_failures_total,
// grpc_jwt_auth_attempts_total and grpc_jwt_auth_failures_total.
//
// Clients use grpccredentials.MTLSClientCredentials from go-spiffe for mTLS
// (it verifies the server's X509-SVID and does not resume TLS sessions), and
// JWTCredentials to send a JWT-SVID for the server's audience, cached until
// half its lifetime.
//
// The package does not issue SVIDs, keep its own trust bundles, or manage
// TLS listeners.
package spiffegrpc
