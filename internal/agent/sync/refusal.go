package sync

import (
	"errors"
	"fmt"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrAgentRefused is wrapped by the error that ends Client.Run or
// Syncer.Run when the server refuses the agent: it was banned or evicted,
// its SVID expired or is not the active one, or attestation was denied.
// The agent should exit; restarting does not help without operator action
// (a new join token, an un-ban).
var ErrAgentRefused = errors.New("sync: agent refused by server")

// refusalOf returns the reason of a PermissionDenied carrying SPIRE's
// PermissionDeniedDetails (the server's agent middleware and RenewAgent
// attach them); ok is false for any other error.
func refusalOf(err error) (reason types.PermissionDeniedDetails_Reason, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus || st.Code() != codes.PermissionDenied {
		return 0, false
	}
	for _, d := range st.Details() {
		if pd, isPD := d.(*types.PermissionDeniedDetails); isPD {
			return pd.GetReason(), true
		}
	}
	return 0, false
}

// mustReattest reports the reasons on which SPIRE's agent attests again
// (when reattestable) or removes its SVID and shuts down.
func mustReattest(reason types.PermissionDeniedDetails_Reason) bool {
	switch reason {
	case types.PermissionDeniedDetails_AGENT_EXPIRED,
		types.PermissionDeniedDetails_AGENT_NOT_ACTIVE,
		types.PermissionDeniedDetails_AGENT_NOT_ATTESTED,
		types.PermissionDeniedDetails_AGENT_MUST_REATTEST:
		return true
	}
	return false
}

// refusedError wraps err as ErrAgentRefused.
func refusedError(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrAgentRefused, what, err)
}

// permanent reports attestation errors that retrying cannot fix.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.InvalidArgument, codes.Unauthenticated,
		codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists, codes.Unimplemented:
		return true
	}
	return false
}
