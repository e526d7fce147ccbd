package sync

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// RenewAt returns when an SVID valid from notBefore to notAfter is renewed:
// at half of its lifetime (SPIRE's default rotation strategy).
func RenewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) / 2)
}

// nextRenewal returns when an agent SVID just received is renewed: at half
// of its lifetime, or, when that is already past (servers backdate
// NotBefore by 10 s, so a TTL under 20 s is past half-life on arrival), at
// half of what remains and at least a second later, so renewals never spin.
func nextRenewal(now, notBefore, notAfter time.Time) time.Time {
	if at := RenewAt(notBefore, notAfter); at.After(now) {
		return at
	}
	return now.Add(max(time.Second, notAfter.Sub(now)/2))
}

// errSVIDExpired marks a failed renewal of an SVID that has already expired:
// the agent cannot authenticate any more.
var errSVIDExpired = errors.New("sync: agent SVID has expired")

// Run renews the agent SVID at half of its lifetime until ctx ends (nil),
// retrying failures with backoff. It returns an error when the server
// refuses the agent (wrapping ErrAgentRefused) or when the SVID expired
// before it could be renewed. Init must have succeeded.
func (c *Client) Run(ctx context.Context) error {
	cur := c.creds.Load()
	if cur == nil {
		return errNotConnected
	}
	t := &task{
		do: c.renewIfDue,
		fatal: func(err error) bool {
			return errors.Is(err, ErrAgentRefused) || errors.Is(err, errSVIDExpired)
		},
		backoff: newRetryBackoff(time.Second, 30*time.Second, c.jitter),
		failed: func(err error, retry time.Duration) {
			c.log.Error("Could not rotate agent SVID", telemetry.Error, err, telemetry.RetryInterval, retry)
		},
	}
	leaf := cur.svid.Certificates[0]
	err := t.run(ctx, RenewAt(leaf.NotBefore, leaf.NotAfter))
	if err != nil {
		c.log.Error("Agent SVID rotation stopped", telemetry.Error, err)
	}
	return err
}

// renewIfDue renews the agent SVID when it is past half of its lifetime and
// returns when it is due next.
func (c *Client) renewIfDue(ctx context.Context) (time.Time, error) {
	leaf := c.creds.Load().svid.Certificates[0]
	if at := RenewAt(leaf.NotBefore, leaf.NotAfter); time.Now().Before(at) {
		return at, nil
	}
	if err := c.rotate(ctx); err != nil {
		if rerr := c.recover(ctx, err); rerr != nil {
			if !errors.Is(rerr, ErrAgentRefused) && !time.Now().Before(leaf.NotAfter) {
				return time.Time{}, fmt.Errorf("%w and renewal failed: %w", errSVIDExpired, rerr)
			}
			return time.Time{}, rerr
		}
	}
	leaf = c.creds.Load().svid.Certificates[0]
	return nextRenewal(time.Now(), leaf.NotBefore, leaf.NotAfter), nil
}

// rotate gets a new agent SVID: by attesting again when the server made the
// agent reattestable, else with agent.v1 RenewAgent over mTLS.
func (c *Client) rotate(ctx context.Context) error {
	c.rotMu.Lock()
	defer c.rotMu.Unlock()
	cur := c.creds.Load()
	if cur.reattestable && c.cfg.Attestor != nil {
		return c.reattestLocked(ctx)
	}
	slot := otherSlot(cur.slot)
	key, err := c.cfg.KeyManager.GenerateKey(slot)
	if err != nil {
		return wrapErr(fmt.Errorf("generate agent key: %w", err))
	}
	csr, err := agentCSR(key)
	if err != nil {
		return err
	}
	var chain []*x509.Certificate
	err = c.call(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		resp, err := agentv1.NewAgentClient(cc).RenewAgent(ctx, &agentv1.RenewAgentRequest{
			Params: &agentv1.AgentX509SVIDParams{Csr: csr},
		})
		if err != nil {
			return err
		}
		chain, err = parseChain(resp.GetSvid().GetCertChain())
		return err
	})
	if err != nil {
		return fmt.Errorf("renew agent SVID: %w", err)
	}
	next, err := c.credsFromChain(chain, key, slot, false)
	if err != nil {
		return err
	}
	if err := c.cfg.Store.SetSVID(chain, false); err != nil {
		return wrapErr(fmt.Errorf("store agent SVID: %w", err))
	}
	if err := c.install(next); err != nil {
		return err
	}
	c.log.Info("Successfully rotated agent SVID", telemetry.SPIFFEID, next.svid.ID.String(), telemetry.ExpiresAt, chain[0].NotAfter)
	return nil
}

// rotateNow renews the agent SVID at once (its authority was tainted). A
// refusal is handled as in the renewal loop.
func (c *Client) rotateNow(ctx context.Context) error {
	if err := c.rotate(ctx); err != nil {
		return c.recover(ctx, err)
	}
	return nil
}

// reattestLocked attests the node again with a key in the other slot.
// Callers hold rotMu.
func (c *Client) reattestLocked(ctx context.Context) error {
	cur := c.creds.Load()
	next, err := c.attest(ctx, otherSlot(cur.slot))
	if err != nil {
		c.metrics.NodeAttestationFailed(c.cfg.Attestor.Type(), telemetry.ReasonFromError(err))
		return fmt.Errorf("reattest: %w", err)
	}
	if err := c.install(next); err != nil {
		return err
	}
	c.log.Info("Successfully reattested node", telemetry.SPIFFEID, next.svid.ID.String())
	return nil
}

// recover handles a refusal of the server in err. It returns nil when the
// agent recovered by attesting again (reattestable agents), err unchanged
// when err is not a refusal, and otherwise an error wrapping
// ErrAgentRefused, after removing the stored SVID for the reasons on which
// SPIRE does (so the next start attests again).
func (c *Client) recover(ctx context.Context, err error) error {
	reason, ok := refusalOf(err)
	if !ok {
		return err
	}
	cur := c.creds.Load()
	if mustReattest(reason) && cur.reattestable && c.cfg.Attestor != nil {
		c.log.Warn("Agent needs to re-attest; will attempt to re-attest", telemetry.Reason, reason.String(), telemetry.Error, err)
		c.rotMu.Lock()
		rerr := c.reattestLocked(ctx)
		c.rotMu.Unlock()
		if rerr == nil {
			return nil
		}
		c.log.Error("Agent failed re-attestation; removing SVID and shutting down", telemetry.Error, rerr)
	} else if mustReattest(reason) {
		c.log.Error("Agent needs to re-attest and cannot: removing SVID and shutting down", telemetry.Reason, reason.String(), telemetry.Error, err)
	} else {
		c.log.Error("Agent is banned: removing SVID and shutting down", telemetry.Reason, reason.String(), telemetry.Error, err)
	}
	if derr := c.cfg.Store.DeleteSVID(); derr != nil {
		c.log.Error("Could not remove the agent SVID", telemetry.Error, derr)
	}
	return refusedError(reason.String(), err)
}

// refusedPlain turns a PermissionDenied without details on an RPC about the
// agent itself (entries, renewal) into a refusal; the stored SVID is kept.
func (c *Client) refusedPlain(err error) error {
	if status.Code(err) != codes.PermissionDenied {
		return err
	}
	c.log.Error("Server denied the agent; shutting down", telemetry.Error, err)
	return refusedError("permission denied", err)
}

func parseChain(ders [][]byte) ([]*x509.Certificate, error) {
	if len(ders) == 0 {
		return nil, wrapErr(errors.New("empty certificate chain"))
	}
	chain := make([]*x509.Certificate, 0, len(ders))
	for _, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, wrapErr(fmt.Errorf("invalid certificate: %w", err))
		}
		chain = append(chain, cert)
	}
	return chain, nil
}
