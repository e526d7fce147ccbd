// Package api holds what the server's gRPC services share: the one mapper
// from domain errors to gRPC status (MakeErr, MakeStatus), the request
// context (caller and request logger), conversions between the
// spire-api-sdk protos and the datastore types, the SPIFFE ID, selector and
// DNS name validation every service applies, and paging limits.
//
// Each service lives in its own sub-package (entry, bundle, agent, svid,
// localauthority, trustdomain) and declares the narrow store or CA
// interface it needs. This package owns no listener and no storage; the
// endpoints package serves the services and the datastore persists them.
//
// One parsing policy for SPIFFE IDs (CONFORMANCE ID-13): every ID that
// enters through the API is parsed with go-spiffe's spiffeid package, which
// rejects upper case in the trust domain, percent-encoding, empty, "." and
// ".." path segments and any character outside the SPIFFE-ID grammar.
package api
