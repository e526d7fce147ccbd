// Command orchestrator-dynamic is the Neural Hive orchestrator: it accepts
// Flow C tasks authenticated by JWT-SVID, discovers workers at the service
// registry and dispatches each task to one over mTLS.
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
	code := cli.RunOrchestrator(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
