package nodeattest

import (
	"context"
	"errors"
)

// JoinTokenType is the attestation type of join tokens.
const JoinTokenType = "join_token"

// JoinToken attests with a join token minted by `spire-server token
// generate`: the payload is the token's bytes, as SPIRE's agent sends it.
// The server consumes the token; the agent ID is
// spiffe://<td>/spire/agent/join_token/<token>.
type JoinToken struct {
	token string
}

// NewJoinToken returns the join_token attestor for token.
func NewJoinToken(token string) *JoinToken {
	return &JoinToken{token: token}
}

var _ Attestor = (*JoinToken)(nil)

// Type returns "join_token".
func (*JoinToken) Type() string { return JoinTokenType }

// Payload returns the token.
func (j *JoinToken) Payload(context.Context) ([]byte, error) {
	if j.token == "" {
		return nil, errors.New("join token is empty")
	}
	return []byte(j.token), nil
}

// Respond fails: the join_token method has no challenge.
func (*JoinToken) Respond(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("join_token attestation does not expect a challenge")
}
