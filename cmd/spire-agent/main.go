// Command spire-agent is the hive-identity agent: a SPIRE 1.13 compatible
// SPIFFE agent and its command line.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/neural-hive/hive-identity/internal/agent/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
