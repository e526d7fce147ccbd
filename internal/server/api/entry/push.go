package entry

import (
	"context"
	"errors"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/neural-hive/hive-identity/internal/push"
	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/index"
)

// Subscriber registers agents for change notifications; *index.Index
// satisfies it.
type Subscriber interface {
	Subscribe(agentID string) *index.Subscription
}

// Push serves the push extension (hive.push.v1 Watch, package push) to
// agents: the current revision at once, then one message per change of the
// calling agent's authorized entries or of the bundles. The stream ends with
// PermissionDenied when the agent is evicted or banned (T3). Extension: not
// part of SPIRE's API.
type Push struct {
	subs Subscriber
}

// NewPush returns the push service.
func NewPush(subs Subscriber) (*Push, error) {
	if subs == nil {
		return nil, errors.New("entry: subscriber is required")
	}
	return &Push{subs: subs}, nil
}

// Register registers the service on r.
func (p *Push) Register(r grpc.ServiceRegistrar) { push.Register(r, p) }

// Watch implements push.Server.
func (p *Push) Watch(ctx context.Context, send func(revision int64) error) error {
	log := api.Logger(ctx)
	caller, ok := api.CallerFrom(ctx)
	if !ok || caller.ID.IsZero() {
		return api.MakeErr(log, codes.Internal, "caller ID missing from request context", nil)
	}
	sub := p.subs.Subscribe(caller.ID.String())
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, open := <-sub.C():
			if !open {
				return api.PermissionDenied(log, types.PermissionDeniedDetails_AGENT_NOT_ATTESTED, "agent is no longer attested")
			}
			if err := send(sub.Revision()); err != nil {
				return err
			}
		}
	}
}
