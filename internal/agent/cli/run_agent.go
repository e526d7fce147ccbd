package cli

import (
	"context"
	"errors"
)

// errRunNotWired is what `run` reports until the agent runtime is connected.
var errRunNotWired = errors.New("spire-agent run is not wired to the agent runtime yet")

// startAgent loads the configuration named by f (file, then flag overrides),
// builds the agent and runs it until ctx is cancelled, returning nil on a
// clean stop. It is the single seam between the CLI and internal/agent: the
// agent runtime is connected here.
func startAgent(ctx context.Context, e *env, f *runFlags) error {
	_, _, _ = ctx, e, f
	return errRunNotWired
}
