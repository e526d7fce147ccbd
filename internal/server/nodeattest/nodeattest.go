// Package nodeattest holds the server side of node attestation: one file per
// attestor (join_token, x509pop, k8s_psat), each turning an agent's attestation payload
// into an agent SPIFFE ID and node selectors. It does not sign anything and
// does not touch attested-node records; the agent API does both.
package nodeattest

import (
	"context"
	"errors"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Result is what a successful attestation proves about an agent.
type Result struct {
	AgentID     spiffeid.ID
	Selectors   []datastore.Selector
	CanReattest bool
}

// Challenger runs one challenge/response round with the agent: it sends the
// challenge and returns the agent's response.
type Challenger func(ctx context.Context, challenge []byte) ([]byte, error)

// Attestor verifies one kind of attestation payload.
type Attestor interface {
	// Type is the attestor name as agents send it ("join_token", "x509pop").
	Type() string
	// Attest verifies payload, running challenge rounds through challenge when
	// the attestor needs them.
	Attest(ctx context.Context, payload []byte, challenge Challenger) (*Result, error)
}

// Refusal is an attestation the agent failed: its Msg is safe to return to the
// agent (the API answers InvalidArgument or PermissionDenied with it).
type Refusal struct {
	Msg string
	// Denied marks a refusal that is about authority (PermissionDenied) rather
	// than a malformed or stale payload (InvalidArgument).
	Denied bool
	Err    error // the cause, for logs only
}

func (r *Refusal) Error() string { return "nodeattest: " + r.Msg }
func (r *Refusal) Unwrap() error { return r.Err }

// IsRefusal reports whether err is a Refusal and returns it.
func IsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}
