package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthcheckCommand asks the agent's gRPC health service, on the Workload
// API socket, whether the agent is serving. It prints exactly
// "Agent is healthy." on success; on failure "Agent is unhealthy: <reason>"
// on stderr and exit 1.
type healthcheckCommand struct {
	e          *env
	fs         *flag.FlagSet
	shallow    bool
	verbose    bool
	socketPath string
}

func newHealthcheckCommand(e *env) command {
	c := &healthcheckCommand{e: e, fs: newFlagSet("health", e.stderr)}
	// -shallow is accepted for compatibility; SPIRE's CLI does not act on it either.
	c.fs.BoolVar(&c.shallow, "shallow", false, "Ask for a lighter check (accepted for compatibility)")
	c.fs.BoolVar(&c.verbose, "verbose", false, "Say what is being checked and why a check failed")
	c.fs.StringVar(&c.socketPath, "socketPath", defaultSocketPath, "Unix socket the agent serves its APIs on")
	return c
}

func (c *healthcheckCommand) synopsis() string { return "Reports whether the agent is healthy" }

func (c *healthcheckCommand) help() string {
	printUsage(c.fs)
	return ""
}

func (c *healthcheckCommand) run(ctx context.Context, args []string) int {
	if err := c.fs.Parse(args); err != nil {
		return exitFailure // the flag set already printed the error and the usage
	}
	if err := c.check(ctx); err != nil {
		_, _ = fmt.Fprintf(c.e.stderr, "Agent is unhealthy: %v\n", err)
		return exitFailure
	}
	c.e.printf("Agent is healthy.\n")
	return exitOK
}

func (c *healthcheckCommand) check(ctx context.Context) error {
	if c.verbose {
		c.e.printf("Checking agent health...\n")
	}
	target, err := socketTarget(c.socketPath)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		if c.verbose {
			_, _ = fmt.Fprintf(c.e.stderr, "Failed to check health: %v\n", err)
		}
		return errors.New("unable to determine health")
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("agent returned status %q", resp.GetStatus())
	}
	return nil
}
