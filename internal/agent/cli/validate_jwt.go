package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

type validateJWTCommand struct {
	*apiCommand
	audience string
	svid     string
	output   outputFlag
}

func newValidateJWTCommand(e *env) command {
	c := &validateJWTCommand{}
	c.apiCommand = newAPICommand(e, "validate jwt", "Asks the Workload API whether a JWT-SVID is valid",
		func(fs *flag.FlagSet) func(context.Context, *workloadClient) error {
			fs.StringVar(&c.audience, "audience", "", "Audience the JWT-SVID must be for (required)")
			fs.StringVar(&c.svid, "svid", "", "The JWT-SVID to check (required)")
			fs.Var(&c.output, "output", "Output format, pretty or json; pretty when unset.")
			return c.validate
		})
	return c
}

func (c *validateJWTCommand) validate(ctx context.Context, client *workloadClient) error {
	if c.audience == "" {
		return errors.New("audience must be specified")
	}
	if c.svid == "" {
		return errors.New("svid must be specified")
	}
	resp, err := c.call(ctx, client)
	if err != nil {
		return err
	}
	if c.output.json {
		return printJSON(c.e.stdout, resp)
	}
	claims, err := protojson.Marshal(resp.GetClaims())
	if err != nil {
		return fmt.Errorf("unable to marshal claims: %w", err)
	}
	// protojson may add random spaces; SPIRE's output is compact.
	var compact bytes.Buffer
	if err := json.Compact(&compact, claims); err != nil {
		return fmt.Errorf("unable to marshal claims: %w", err)
	}
	c.e.printf("SVID is valid.\nSPIFFE ID : %s\nClaims    : %s\n", resp.GetSpiffeId(), compact.Bytes())
	return nil
}

// call validates the token; an InvalidArgument answer means the token is not
// valid and is reported as such.
func (c *validateJWTCommand) call(ctx context.Context, client *workloadClient) (*workload.ValidateJWTSVIDResponse, error) {
	ctx, cancel := client.callContext(ctx)
	defer cancel()
	resp, err := client.api.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: c.audience, Svid: c.svid})
	if err != nil {
		if s := status.Convert(err); s.Code() == codes.InvalidArgument {
			return nil, fmt.Errorf("SVID is not valid: %s", s.Message())
		}
		return nil, fmt.Errorf("unable to validate JWT SVID: %w", err)
	}
	return resp, nil
}
