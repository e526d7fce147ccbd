// Package sync keeps the agent's identities current with the server, over
// SPIRE 1.13's agent<->server protocol.
//
// [Client] owns the agent's credentials and its connection to the server:
// it loads the agent X509-SVID from data_dir or attests the node
// (agent.v1 AttestAgent through internal/agent/nodeattest, over TLS that
// checks the server presents spiffe://<td>/spire/server chained to the
// bootstrap bundle, or insecure_bootstrap), persists SVID, key and bundle,
// renews the SVID at half of its lifetime (agent.v1 RenewAgent, or a new
// attestation when the server marked the agent reattestable), and serves
// RPCs over mTLS whose client certificate is the current agent SVID. It also
// signs JWT-SVIDs on demand (svid.v1 NewJWTSVID) for the cache.
//
// [Syncer] is the sync loop: entry.v1 SyncAuthorizedEntries (or
// GetAuthorizedEntries against a server without it), bundle.v1 GetBundle
// and GetFederatedBundle for the trust domains the entries federate with,
// then one svid.v1 BatchNewX509SVID call for every entry that has no
// X509-SVID, has a stale one or is past half of its SVID's lifetime (a
// workload key and CSR per entry, generated here). Results go to the cache
// (internal/agent/cache). A sync runs when the server pushes a new revision
// (Extension: the hive.push.v1 Watch stream of internal/push), every 5 s
// when the server does not implement push (as SPIRE agents poll), every 30 s
// as a safety net, and when an SVID reaches half of its lifetime. SVIDs
// (workload and agent) chained to an X.509 authority newly marked tainted in
// the bundle are re-signed at once. A separate loop renews cached
// JWT-SVIDs at half of their lifetime, without syncing entries. Failures
// are retried with bounded, jittered backoff; the cache keeps serving what it
// has while the server is unreachable.
//
// A server refusing the agent (PermissionDenied: banned, evicted, expired)
// ends Run with an error wrapping [ErrAgentRefused]; for the reasons on
// which SPIRE removes the SVID, the stored SVID is deleted so the next start
// attests again. A reattestable agent attests again instead, in place.
package sync
