package cli

import (
	"context"
	"errors"
)

// errRunNotWired is what `run` reports until the agent runtime is connected.
var errRunNotWired = errors.New("spire-agent run is not wired to the agent runtime yet")

// startAgent builds the agent from the checked configuration and runs it
// until ctx is cancelled, returning nil on a clean stop. It is the single
// seam between the CLI and internal/agent: the agent runtime is connected
// here (convert a.cfg into the agent's Config, with a.logger and a.level,
// refuse a configuration without a NodeAttestor as SPIRE's catalog does,
// then New and Run).
func startAgent(ctx context.Context, a *loadedAgent) error {
	_, _ = ctx, a
	return errRunNotWired
}
