package sync

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/agent/nodeattest"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// Key IDs of the agent SVID key in the KeyManager. A renewal writes the new
// key into the slot the current SVID does not use, so a crash between the
// key write and the SVID write leaves the old pair intact.
const (
	keySlotA = "agent-svid-A"
	keySlotB = "agent-svid-B"
)

// clockSkew is the margin under which a stored SVID counts as expired.
const clockSkew = time.Second

// Init makes the Client ready: it loads the agent SVID stored in data_dir
// when it is unexpired and its key is found, and otherwise attests the node
// with the configured Attestor, retrying with backoff while the server is
// unreachable (unless AttestOnce). It blocks until then or until ctx ends.
// A refused attestation returns an error wrapping ErrAgentRefused; local
// failures (an empty token, a malformed answer) are not retried.
func (c *Client) Init(ctx context.Context) error {
	if err := c.loadBundle(); err != nil {
		return err
	}
	cur, reason := c.loadSVID()
	if cur != nil {
		if c.bundle.Load() == nil {
			// insecure_bootstrap stored an SVID but no bundle yet.
			if err := c.fetchBootstrapBundle(ctx); err != nil {
				return err
			}
		}
		c.log.Info("SVID loaded", telemetry.SPIFFEID, cur.svid.ID.String(), telemetry.ExpiresAt, cur.svid.Certificates[0].NotAfter)
		return c.install(cur)
	}
	if c.cfg.Attestor == nil {
		return wrapErr(fmt.Errorf("no usable agent SVID (%s) and no node attestor configured", reason))
	}
	c.log.Info("Starting node attestation", telemetry.Reason, reason, telemetry.Attestor, c.cfg.Attestor.Type())
	bo := newRetryBackoff(time.Second, 30*time.Second, c.jitter)
	for {
		cur, err := c.attest(ctx, keySlotA)
		if err == nil {
			c.log.Info("Node attestation was successful", telemetry.SPIFFEID, cur.svid.ID.String(), "reattestable", cur.reattestable)
			return c.install(cur)
		}
		c.metrics.NodeAttestationFailed(c.cfg.Attestor.Type(), telemetry.ReasonFromError(err))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if permanent(err) {
			c.log.Error("Node attestation failed", telemetry.Error, err)
			return refusedError("node attestation", err)
		}
		if _, isStatus := status.FromError(err); !isStatus || c.cfg.AttestOnce {
			c.log.Error("Node attestation failed", telemetry.Error, err)
			return err
		}
		d := bo.next()
		c.log.Warn("Node attestation failed; retrying", telemetry.Error, err, telemetry.RetryInterval, d)
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// loadBundle sets the trust bundle from data_dir, else from the bootstrap
// configuration.
func (c *Client) loadBundle() error {
	stored, err := c.cfg.Store.Bundle()
	switch {
	case err == nil:
		c.bundle.Store(x509bundle.FromX509Authorities(c.cfg.TrustDomain, stored))
		c.log.Info("Bundle loaded", telemetry.TrustDomain, c.cfg.TrustDomain.String())
		return nil
	case c.cfg.InsecureBootstrap:
		if len(c.cfg.TrustBundle) > 0 {
			c.log.Warn("Trust bundle will be ignored; performing insecure bootstrap")
		}
		return nil
	case len(c.cfg.TrustBundle) == 0:
		return wrapErr(fmt.Errorf("no trust bundle: set trust_bundle_path or insecure_bootstrap (stored bundle: %w)", err))
	default:
		c.bundle.Store(x509bundle.FromX509Authorities(c.cfg.TrustDomain, c.cfg.TrustBundle))
		return nil
	}
}

// loadSVID returns the stored credentials when usable, or nil and why not.
func (c *Client) loadSVID() (*agentCreds, string) {
	chain, reattestable, err := c.cfg.Store.SVID()
	if err != nil {
		return nil, "no stored SVID"
	}
	leaf := chain[0]
	if !time.Now().Add(clockSkew).Before(leaf.NotAfter) {
		c.log.Warn("Stored SVID is expired; attesting again", telemetry.ExpiresAt, leaf.NotAfter)
		return nil, "stored SVID expired"
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil || id.TrustDomain() != c.cfg.TrustDomain {
		c.log.Warn("Stored SVID is not an SVID of the trust domain; attesting again", telemetry.Error, err)
		return nil, "stored SVID invalid"
	}
	for _, slot := range []string{keySlotA, keySlotB} {
		key, err := c.cfg.KeyManager.Key(slot)
		if err != nil || !samePublicKey(key.Public(), leaf.PublicKey) {
			continue
		}
		return &agentCreds{
			svid:         &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key},
			slot:         slot,
			reattestable: reattestable,
		}, ""
	}
	c.log.Warn("SVID recovered, but no key found for it; attesting again")
	return nil, "no key for stored SVID"
}

// attest runs one node attestation with a new key in slot over the
// bootstrap connection and persists the result.
func (c *Client) attest(ctx context.Context, slot string) (*agentCreds, error) {
	key, err := c.cfg.KeyManager.GenerateKey(slot)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("generate agent key: %w", err))
	}
	csr, err := agentCSR(key)
	if err != nil {
		return nil, err
	}
	cc, err := c.dial(c.bootstrapConfig())
	if err != nil {
		return nil, err
	}
	defer cc.Close()

	actx, cancel := context.WithTimeout(ctx, c.cfg.RPCTimeout)
	defer cancel()
	res, err := nodeattest.Attest(actx, cc, c.cfg.Attestor, csr)
	if err != nil {
		return nil, err
	}
	cur, err := c.credsFromChain(res.SVID, key, slot, res.Reattestable)
	if err != nil {
		return nil, err
	}
	if err := c.cfg.Store.SetSVID(res.SVID, res.Reattestable); err != nil {
		return nil, wrapErr(fmt.Errorf("store agent SVID: %w", err))
	}

	// The bundle, as SPIRE's agent fetches it right after attesting. The SVID
	// is stored already: a failure here must not waste the attestation.
	var authorities []*x509.Certificate
	resp, err := bundlev1.NewBundleClient(cc).GetBundle(actx, &bundlev1.GetBundleRequest{})
	if err == nil {
		var b *bundleData
		if b, err = c.ownBundleFromProto(resp); err == nil {
			authorities = b.bundle.X509Authorities()
		}
	}
	if err != nil {
		cur := c.bundle.Load()
		if cur == nil {
			return nil, wrapErr(fmt.Errorf("get bundle after attestation: %w", err))
		}
		c.log.Warn("Could not get the bundle after attestation; keeping the bootstrap bundle", telemetry.Error, err)
		authorities = cur.X509Authorities()
	}
	if err := c.storeBundle(authorities); err != nil {
		return nil, err
	}
	return cur, nil
}

// fetchBootstrapBundle gets the bundle over the insecure bootstrap
// connection (GetBundle needs no client certificate).
func (c *Client) fetchBootstrapBundle(ctx context.Context) error {
	cc, err := c.dial(c.bootstrapConfig())
	if err != nil {
		return err
	}
	defer cc.Close()
	bo := newRetryBackoff(time.Second, 30*time.Second, c.jitter)
	for {
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RPCTimeout)
		resp, err := bundlev1.NewBundleClient(cc).GetBundle(rctx, &bundlev1.GetBundleRequest{})
		cancel()
		if err == nil {
			b, err := c.ownBundleFromProto(resp)
			if err != nil {
				return err
			}
			return c.storeBundle(b.bundle.X509Authorities())
		}
		d := bo.next()
		c.log.Warn("Could not get the bundle; retrying", telemetry.Error, err, telemetry.RetryInterval, d)
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// credsFromChain checks that chain is an agent SVID of the trust domain
// for key.
func (c *Client) credsFromChain(chain []*x509.Certificate, key crypto.Signer, slot string, reattestable bool) (*agentCreds, error) {
	if len(chain) == 0 {
		return nil, wrapErr(errors.New("server returned an empty agent SVID"))
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, wrapErr(fmt.Errorf("agent SVID: %w", err))
	}
	if id.TrustDomain() != c.cfg.TrustDomain {
		return nil, wrapErr(fmt.Errorf("agent SVID %q is not in trust domain %q", id, c.cfg.TrustDomain))
	}
	if !samePublicKey(chain[0].PublicKey, key.Public()) {
		return nil, wrapErr(errors.New("agent SVID does not certify the agent key"))
	}
	return &agentCreds{
		svid:         &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key},
		slot:         slot,
		reattestable: reattestable,
	}, nil
}

// agentCSR is a CSR that conveys key; the server sets every attribute of
// the agent SVID itself (SPIRE's agent sends no URI SAN here).
func agentCSR(key crypto.Signer) ([]byte, error) {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}},
	}, key)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("make CSR: %w", err))
	}
	return csr, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func otherSlot(slot string) string {
	if slot == keySlotA {
		return keySlotB
	}
	return keySlotA
}
