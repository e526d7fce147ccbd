// Package ca owns the server's signing authorities: the X.509 CA that signs
// X509-SVIDs and the key that signs JWT-SVIDs, each in prepared, active and
// old slots with SPIRE's rotation schedule, journaled in the datastore so a
// restart brings the same authorities back.
//
// It publishes every new authority to the own trust domain bundle before it
// signs anything with it (SPIFFE Federation §4.1), and implements the manual
// LocalAuthority operations (prepare, activate, taint, revoke) with SPIRE's
// conditions. Keys live behind a KeyManager: DiskKeyManager (one JSON file,
// mode 0600) or MemoryKeyManager. An optional UpstreamDisk signs the X.509 CA
// instead of self-signing it.
//
// The package does not decide who may get which SVID: callers pass the
// registration entry's data and the CA signs exactly what the parameters
// say. It owns no sockets and no gRPC status codes; the API layer maps the
// exported errors to codes.
package ca
