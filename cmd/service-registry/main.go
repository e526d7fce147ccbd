// Command service-registry is the Neural Hive service registry: workers register
// under expiring leases, the orchestrator discovers them (Flow C step C3),
// every call authenticated by X509-SVID (mTLS).
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
	code := cli.RunRegistry(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
