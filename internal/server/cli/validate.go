package cli

import (
	"context"
	"flag"
)

// Placeholder until the config owner replaces this file (see the contract in cli.go).

const validateSynopsis = "Checks a server configuration file"

func setupValidate(fs *flag.FlagSet, e *env) func(ctx context.Context) int {
	return func(context.Context) int {
		_ = e.errorf("Error: not implemented\n")
		return 1
	}
}
