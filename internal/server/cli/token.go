package cli

import (
	"context"
	"flag"
	"fmt"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

func tokenCommands() []command {
	return []command{
		{name: "token generate", flagName: "generate", synopsis: "Creates a single-use join token for attesting an agent", setup: apiSetup(tokenGenerateFlags)},
	}
}

func tokenGenerateFlags(fs *flag.FlagSet, e *env) apiAction {
	ttl := fs.Int("ttl", 600, "Seconds the token stays valid")
	spiffeID := fs.String("spiffeID", "", "Extra SPIFFE ID the server gives the agent that uses the token (optional)")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		var agentID *types.SPIFFEID
		if *spiffeID != "" {
			var err error
			if agentID, err = protoID(*spiffeID); err != nil {
				return err
			}
		}
		t, err := toInt32(*ttl)
		if err != nil {
			return fmt.Errorf("invalid value for TTL: %w", err)
		}
		tok, err := c.agent().CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{AgentId: agentID, Ttl: t})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, tok)
		}
		if err := e.printf("Token: %s\n", tok.Value); err != nil {
			return err
		}
		if *spiffeID == "" {
			return e.printf("Warning: Missing SPIFFE ID.\n")
		}
		return nil
	}
}
