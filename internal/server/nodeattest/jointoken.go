package nodeattest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// TokenStore is the part of the datastore the join_token attestor uses.
type TokenStore interface {
	ConsumeJoinToken(ctx context.Context, token string) (*datastore.JoinToken, error)
}

// JoinToken is the server side of the join_token attestor: the payload is the
// token; it is single use (consumed atomically, so of many concurrent
// attestations with one token exactly one succeeds) and must not be expired.
// The agent ID is spiffe://<td>/spire/agent/join_token/<token>.
type JoinToken struct {
	TD    spiffeid.TrustDomain
	Store TokenStore
	Clock func() time.Time
}

// Type implements Attestor.
func (j *JoinToken) Type() string { return "join_token" }

// Attest implements Attestor.
func (j *JoinToken) Attest(ctx context.Context, payload []byte, _ Challenger) (*Result, error) {
	token := string(payload)
	if token == "" {
		return nil, &Refusal{Msg: "failed to attest: join token is empty"}
	}
	// T5: the token becomes a path segment; a token that is not a valid
	// segment (slashes, dots, percent signs...) can never have been issued by
	// us and must not shape the agent ID.
	agentID, err := spiffeid.FromSegments(j.TD, "spire", "agent", "join_token", token)
	if err != nil {
		return nil, &Refusal{Msg: "failed to attest: join token does not exist or has already been used", Err: err}
	}
	jt, err := j.Store.ConsumeJoinToken(ctx, token)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, &Refusal{Msg: "failed to attest: join token does not exist or has already been used"}
	case err != nil:
		return nil, fmt.Errorf("nodeattest: consume join token: %w", err)
	}
	now := time.Now
	if j.Clock != nil {
		now = j.Clock
	}
	if time.Unix(jt.ExpiresAt, 0).Before(now()) {
		return nil, &Refusal{Msg: "join token expired"}
	}
	return &Result{AgentID: agentID}, nil
}
