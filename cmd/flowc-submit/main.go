// Command flowc-submit submits Flow C tasks to the orchestrator-dynamic with
// a JWT-SVID from the SPIRE agent and prints the results.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/neural-hive/hive-identity/internal/hive/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.RunSubmit(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
