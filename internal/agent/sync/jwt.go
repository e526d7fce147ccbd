package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
)

var _ cache.JWTSigner = (*Client)(nil)

// NewJWTSVID signs a JWT-SVID for entry and audience through the server
// (svid.v1 NewJWTSVID); the server checks that the entry is authorized to
// this agent. It implements cache.JWTSigner and is safe for concurrent use.
func (c *Client) NewJWTSVID(ctx context.Context, entry *cache.Entry, audience []string) (*cache.JWTSVID, error) {
	if entry == nil || entry.ID == "" {
		return nil, wrapErr(errors.New("JWT-SVID: entry is required"))
	}
	var out *cache.JWTSVID
	err := c.call(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		resp, err := svidv1.NewSVIDClient(cc).NewJWTSVID(ctx, &svidv1.NewJWTSVIDRequest{
			EntryId:  entry.ID,
			Audience: audience,
		})
		if err != nil {
			return err
		}
		svid := resp.GetSvid()
		switch {
		case svid == nil || svid.GetToken() == "":
			return errors.New("response has no JWT-SVID")
		case svid.GetIssuedAt() == 0:
			return errors.New("JWT-SVID has no issued-at time")
		case svid.GetExpiresAt() == 0:
			return errors.New("JWT-SVID has no expiry")
		case svid.GetIssuedAt() > svid.GetExpiresAt():
			return errors.New("JWT-SVID expires before it is issued")
		}
		out = &cache.JWTSVID{
			Token:     svid.GetToken(),
			IssuedAt:  time.Unix(svid.GetIssuedAt(), 0).UTC(),
			ExpiresAt: time.Unix(svid.GetExpiresAt(), 0).UTC(),
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr(fmt.Errorf("new JWT-SVID for entry %q: %w", entry.ID, err))
	}
	return out, nil
}
