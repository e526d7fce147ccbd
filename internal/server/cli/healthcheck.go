package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"google.golang.org/grpc/health/grpc_health_v1"
)

func healthcheckFlags(fs *flag.FlagSet, e *env) apiAction {
	// Accepted for compatibility: the check is the same either way.
	fs.Bool("shallow", false, "Only check that the server answers")
	verbose := fs.Bool("verbose", false, "Print progress and the reason of a failure")
	return func(ctx context.Context, c *client) error {
		if err := checkHealth(ctx, e, c, *verbose); err != nil {
			return fmt.Errorf("server is unhealthy: %w", err)
		}
		return e.printf("Server is healthy.\n")
	}
}

func checkHealth(ctx context.Context, e *env, c *client, verbose bool) error {
	if verbose {
		if err := e.printf("Checking server health...\n"); err != nil {
			return err
		}
	}
	resp, err := c.health().Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		if verbose {
			_ = e.errorf("Failed to check health: %v\n", err)
		}
		return errors.New("unable to determine health")
	}
	if resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("server returned status %q", resp.Status)
	}
	return nil
}
