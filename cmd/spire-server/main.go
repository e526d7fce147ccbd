// Command spire-server is the hive-identity SPIFFE server and its admin CLI,
// command-line compatible with SPIRE 1.13's spire-server.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/neural-hive/hive-identity/internal/server/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
