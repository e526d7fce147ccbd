package telemetry

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Other is the label value that replaces any value outside a fixed set, so a
// caller (or an attacker choosing an attestor name) cannot grow a series set.
const Other = "other"

// Attestation types: the type label of spire_agent_attestation_errors_total.
const (
	AttestationNode     = "node"
	AttestationWorkload = "workload"
)

// SVID types: the type label of spire_server_svids_issued_total.
const (
	SVIDTypeX509 = "x509"
	SVIDTypeJWT  = "jwt"
)

// Results: the result label of spire_server_node_attestations_total.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// Reasons: the reason label of spire_agent_attestation_errors_total. A
// value outside this list is reported as Other.
const (
	// ReasonRejected: the server refused the attestation (bad or used join
	// token, untrusted certificate, banned agent): PermissionDenied,
	// Unauthenticated, InvalidArgument, NotFound, FailedPrecondition.
	ReasonRejected = "rejected"
	// ReasonUnavailable: the server could not be reached.
	ReasonUnavailable = "unavailable"
	// ReasonTimeout: a deadline passed.
	ReasonTimeout = "timeout"
	// ReasonCanceled: the attempt was abandoned (shutdown).
	ReasonCanceled = "canceled"
	// ReasonInternal: the server failed (Internal, Unknown, DataLoss...).
	ReasonInternal = "internal"
	// ReasonLocal: the local attestor could not produce its data (missing
	// certificate or token file, kubelet unreachable).
	ReasonLocal = "local"
	// ReasonNoIdentity: a workload was attested but no entry matched it
	// (PermissionDenied "no identity issued").
	ReasonNoIdentity = "no_identity"
	// ReasonPeer: the caller's process could not be identified (no peer
	// credentials, process exited, PID reused).
	ReasonPeer = "peer_unknown"
)

// boundReason returns v if it is one of the Reason constants, else Other.
func boundReason(v string) string {
	switch v {
	case ReasonRejected, ReasonUnavailable, ReasonTimeout, ReasonCanceled,
		ReasonInternal, ReasonLocal, ReasonNoIdentity, ReasonPeer:
		return v
	}
	return Other
}

// boundAttestor returns v if it names a node or workload attestor of
// SPIRE 1.13, else Other.
func boundAttestor(v string) string {
	switch v {
	// node attestors
	case "join_token", "x509pop", "k8s_psat", "k8s_sat", "aws_iid", "azure_msi", "azure_imds",
		"gcp_iit", "tpm_devid", "sshpop", "http_challenge",
		// workload attestors
		"unix", "k8s", "docker", "systemd", "windows":
		return v
	}
	return Other
}

// boundDatastoreOp returns v if it names a datastore.Store method in
// snake_case (the op label of spire_server_datastore_operation_duration_seconds),
// else Other.
func boundDatastoreOp(v string) string {
	switch v {
	case "ping",
		"create_entry", "fetch_entry", "fetch_entries", "list_entries", "count_entries",
		"update_entry", "delete_entry", "prune_entries",
		"create_attested_node", "fetch_attested_node", "list_attested_nodes", "count_attested_nodes",
		"update_attested_node", "delete_attested_node", "set_node_selectors", "get_node_selectors",
		"list_node_selectors",
		"create_join_token", "fetch_join_token", "consume_join_token", "delete_join_token",
		"prune_join_tokens",
		"create_bundle", "fetch_bundle", "list_bundles", "count_bundles", "update_bundle",
		"set_bundle", "append_bundle", "update_bundle_func", "delete_bundle",
		"fetch_ca_journal", "set_ca_journal",
		"create_federation_relationship", "fetch_federation_relationship",
		"list_federation_relationships", "update_federation_relationship",
		"delete_federation_relationship",
		"list_changes", "latest_change_seq":
		return v
	}
	return Other
}

// Authority types and statuses: the labels of
// spire_server_ca_authority_expiry_timestamp_seconds and
// spire_server_ca_authority_ttl_seconds.
const (
	AuthorityX509     = "x509"
	AuthorityJWT      = "jwt"
	AuthorityUpstream = "upstream"

	AuthorityActive   = "active"
	AuthorityPrepared = "prepared"
	AuthorityOld      = "old"
)

func boundAuthorityType(v string) string {
	switch v {
	case AuthorityX509, AuthorityJWT, AuthorityUpstream:
		return v
	}
	return Other
}

func boundAuthorityStatus(v string) string {
	switch v {
	case AuthorityActive, AuthorityPrepared, AuthorityOld:
		return v
	}
	return Other
}

// ReasonFromError maps the error of a failed node attestation to a reason
// of the fixed set: gRPC codes of the server's answer, context errors, and
// ReasonLocal for an error that carries no gRPC status (the local attestor
// failed before calling the server).
func ReasonFromError(err error) string {
	switch {
	case err == nil:
		return Other
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	}
	st, ok := status.FromError(err)
	if !ok {
		// status.FromError also unwraps; no status anywhere in the chain.
		return ReasonLocal
	}
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument,
		codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists:
		return ReasonRejected
	case codes.Unavailable:
		return ReasonUnavailable
	case codes.DeadlineExceeded:
		return ReasonTimeout
	case codes.Canceled:
		return ReasonCanceled
	default:
		return ReasonInternal
	}
}
