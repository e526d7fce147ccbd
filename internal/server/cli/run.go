package cli

import (
	"context"
	"flag"
)

// Placeholder until the config owner replaces this file (see the contract in cli.go).

const runSynopsis = "Starts the server"

func setupRun(fs *flag.FlagSet, e *env) func(ctx context.Context) int {
	return func(context.Context) int {
		_ = e.errorf("Error: not implemented\n")
		return 1
	}
}
