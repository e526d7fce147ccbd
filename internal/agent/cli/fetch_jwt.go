package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
)

type fetchJWTCommand struct {
	*apiCommand
	audience commaListFlag
	spiffeID string
	output   outputFlag
}

func newFetchJWTCommand(e *env) command {
	c := &fetchJWTCommand{}
	c.apiCommand = newAPICommand(e, "fetch jwt", "Prints JWT-SVIDs and JWT bundles from the Workload API",
		func(fs *flag.FlagSet) func(context.Context, *workloadClient) error {
			fs.Var(&c.audience, "audience", "Audiences the JWT-SVIDs are for, separated by commas (required)")
			fs.StringVar(&c.spiffeID, "spiffeID", "", "Ask only for the JWT-SVID of this SPIFFE ID")
			fs.Var(&c.output, "output", "Output format, pretty or json; pretty when unset.")
			fs.Var(&c.output, "format", "Older name of -output")
			return c.fetch
		})
	return c
}

// fetch gets the JWT bundles, then the JWT-SVIDs, as SPIRE does, and prints
// both: in JSON as a two-element array [svids, bundles].
func (c *fetchJWTCommand) fetch(ctx context.Context, client *workloadClient) error {
	if len(c.audience) == 0 {
		return errors.New("audience must be specified")
	}
	bundles, err := fetchJWTBundles(ctx, client)
	if err != nil {
		return err
	}
	svids, err := c.fetchJWTSVIDs(ctx, client)
	if err != nil {
		return err
	}
	if c.output.json {
		return printJSON(c.e.stdout, svids, bundles)
	}
	for _, svid := range svids.GetSvids() {
		c.e.printf("token(%s):\n\t%s\n", svid.GetSpiffeId(), svid.GetSvid())
		if svid.GetHint() != "" {
			c.e.printf("hint(%s):\n\t%s\n", svid.GetSpiffeId(), svid.GetHint())
		}
	}
	for _, td := range slices.Sorted(maps.Keys(bundles.GetBundles())) {
		c.e.printf("bundle(%s):\n\t%s\n", td, bundles.GetBundles()[td])
	}
	return nil
}

func (c *fetchJWTCommand) fetchJWTSVIDs(ctx context.Context, client *workloadClient) (*workload.JWTSVIDResponse, error) {
	ctx, cancel := client.callContext(ctx)
	defer cancel()
	return client.api.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: c.audience, SpiffeId: c.spiffeID})
}

// fetchJWTBundles returns the first message of the FetchJWTBundles stream.
func fetchJWTBundles(ctx context.Context, client *workloadClient) (*workload.JWTBundlesResponse, error) {
	ctx, cancel := client.callContext(ctx)
	defer cancel()
	stream, err := client.api.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
	if err != nil {
		return nil, fmt.Errorf("failed to receive JWT bundles: %w", err)
	}
	return stream.Recv()
}
