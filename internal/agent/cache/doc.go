// Package cache holds the agent's view of its identities: the registration
// entries authorized to this agent, the X509-SVID and private key signed for
// each entry, the trust bundle of the agent's trust domain and the federated
// bundles, and a cache of JWT-SVIDs keyed by SPIFFE ID and audience.
//
// Workload API streams subscribe by selector set ([Cache.Subscribe]) and are
// told, through a coalescing channel, when their identity set changes. The
// sync loop feeds the cache with [Cache.SetEntries], [Cache.SetSVIDs] and
// [Cache.SetBundle] and asks [Cache.StaleEntries] which entries need a new
// X509-SVID.
//
// Selectors are SPIRE's "type:value" strings ("unix:uid:1000"); the type is
// the part before the first colon. An entry matches a workload when every
// selector of the entry is among the workload's selectors; an entry without
// selectors matches nothing.
//
// The cache does not talk to the server, does not generate keys and does not
// schedule anything: signing is the caller's job, time decisions take "now"
// as an argument. JWT-SVIDs are the exception: [Cache.FetchJWTSVID] signs
// through the [JWTSigner] given in [Config] when the cached token is past
// half of its lifetime.
//
// Values handed to the cache (entries, SVIDs, bundles) and values read from
// it are shared and must not be modified.
package cache
