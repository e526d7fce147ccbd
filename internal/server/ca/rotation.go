package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// SPIRE's rotation schedule (pkg/server/ca/manager): the next authority is
// prepared when the active one has lived half its life (at most 30 days
// before its expiry) and activated at five sixths (at most 7 days before).
const (
	rotateInterval              = 10 * time.Second
	preparationThresholdDivisor = 2
	preparationThresholdCap     = 30 * 24 * time.Hour
	activationThresholdDivisor  = 6
	activationThresholdCap      = 7 * 24 * time.Hour
)

// preparationThreshold is the time after which the authority issued at
// issuedAt and expiring at notAfter needs a prepared successor.
func preparationThreshold(issuedAt, notAfter time.Time) time.Time {
	return notAfter.Add(-min(notAfter.Sub(issuedAt)/preparationThresholdDivisor, preparationThresholdCap))
}

// activationThreshold is the time after which its successor becomes active.
func activationThreshold(issuedAt, notAfter time.Time) time.Time {
	return notAfter.Add(-min(notAfter.Sub(issuedAt)/activationThresholdDivisor, activationThresholdCap))
}

func shouldPrepareNext(issuedAt, notAfter, now time.Time) bool {
	return now.After(preparationThreshold(issuedAt, notAfter))
}

func shouldActivateNext(issuedAt, notAfter, now time.Time) bool {
	return now.After(activationThreshold(issuedAt, notAfter))
}

// MaxSVIDTTLForCATTL is the longest SVID TTL a CA TTL guarantees without
// the SVID being cut short by a rotation (SPIRE's rule, for config checks).
func MaxSVIDTTLForCATTL(caTTL time.Duration) time.Duration {
	return min(caTTL/activationThresholdDivisor, activationThresholdCap)
}

// Init loads the authorities from the journal, reusing the KeyManager's keys
// (so a disk KeyManager brings the same CA and JWT key back after a restart
// and the bundle does not change), then creates, prepares or activates
// whatever the schedule calls for at the current time. On a first start it
// creates and activates the first X.509 CA and JWT key, publishing both in
// the trust bundle before use. It returns an error when no active X.509 CA
// or JWT key could be set up.
func (c *CA) Init(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.c.Upstream != nil {
		if err := c.c.Upstream.check(now); err != nil {
			return err
		}
	}
	st, err := c.load(ctx, now)
	if err != nil {
		return err
	}
	c.log.Info("Journal loaded", "x509_cas", countX509(st), "jwt_keys", countJWT(st))
	if st.x509Cur != nil || st.jwtCur != nil {
		if err := c.commit(ctx, st); err != nil {
			return err
		}
		if st.x509Cur != nil {
			c.logX509("X509 CA activated", st.x509Cur)
		}
		if st.jwtCur != nil {
			c.logJWT("JWT key activated", st.jwtCur)
		}
	} else {
		c.x509Cur, c.x509Next, c.jwtCur, c.jwtNext = st.x509Cur, st.x509Next, st.jwtCur, st.jwtNext
	}
	return c.rotateLocked(ctx, now)
}

func countX509(st state) int {
	n := 0
	for _, s := range []*x509Slot{st.x509Cur, st.x509Next} {
		if s != nil {
			n++
		}
	}
	return n
}

func countJWT(st state) int {
	n := 0
	for _, s := range []*jwtSlot{st.jwtCur, st.jwtNext} {
		if s != nil {
			n++
		}
	}
	return n
}

// Run rotates the authorities every 10 seconds, as SPIRE's rotator does,
// until ctx is done; then it returns nil. Rotation failures are logged and
// retried on the next tick. Call Init first.
func (c *CA) Run(ctx context.Context) error {
	t := time.NewTicker(rotateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.mu.Lock()
			_ = c.rotateLocked(ctx, c.now())
			c.mu.Unlock()
		}
	}
}

// rotateLocked applies the schedule at now to both kinds of authority,
// logging failures. Callers hold c.mu.
func (c *CA) rotateLocked(ctx context.Context, now time.Time) error {
	x509Err := c.rotateX509(ctx, now)
	if x509Err != nil {
		c.log.Error("Unable to rotate X509 CA", "error", x509Err)
		if c.x509Cur == nil {
			// As SPIRE: without an X.509 CA the server cannot work; do not
			// create a JWT key either.
			return x509Err
		}
	}
	jwtErr := c.rotateJWT(ctx, now)
	if jwtErr != nil {
		c.log.Error("Unable to rotate JWT key", "error", jwtErr)
	}
	return errors.Join(x509Err, jwtErr)
}

func (c *CA) rotateX509(ctx context.Context, now time.Time) error {
	st := c.current()
	if n := st.x509Next; n != nil && n.status == StatusOld && !now.Before(n.cert.NotAfter) {
		st.x509Next = nil
		if err := c.commit(ctx, st); err != nil {
			return err
		}
		c.logX509("Old X509 CA expired", n)
	}
	if st.x509Cur == nil {
		slotID := "A"
		if st.x509Next != nil && st.x509Next.slotID == "A" {
			slotID = "B"
		}
		s, err := c.newX509Slot(ctx, slotID, now)
		if err != nil {
			return err
		}
		st.x509Cur = s.withStatus(StatusActive)
		if err := c.commit(ctx, st); err != nil {
			return err
		}
		c.logX509("X509 CA activated", st.x509Cur)
	}
	cur := st.x509Cur
	if (st.x509Next == nil || st.x509Next.status == StatusOld) && shouldPrepareNext(cur.issuedAt, cur.cert.NotAfter, now) {
		s, err := c.newX509Slot(ctx, otherSlotID(cur.slotID), now)
		if err != nil {
			return err
		}
		st.x509Next = s
		if err := c.commit(ctx, st); err != nil {
			return err
		}
	}
	if st.x509Next != nil && st.x509Next.status == StatusPrepared && shouldActivateNext(cur.issuedAt, cur.cert.NotAfter, now) {
		return c.activateX509(ctx, st)
	}
	return nil
}

func (c *CA) rotateJWT(ctx context.Context, now time.Time) error {
	st := c.current()
	if n := st.jwtNext; n != nil && n.status == StatusOld && !now.Before(n.notAfter) {
		st.jwtNext = nil
		if err := c.commit(ctx, st); err != nil {
			return err
		}
		c.logJWT("Old JWT key expired", n)
	}
	if st.jwtCur == nil {
		slotID := "A"
		if st.jwtNext != nil && st.jwtNext.slotID == "A" {
			slotID = "B"
		}
		s, err := c.newJWTSlot(ctx, slotID, now)
		if err != nil {
			return err
		}
		st.jwtCur = s.withStatus(StatusActive)
		if err := c.commit(ctx, st); err != nil {
			return err
		}
		c.logJWT("JWT key activated", st.jwtCur)
	}
	cur := st.jwtCur
	if (st.jwtNext == nil || st.jwtNext.status == StatusOld) && shouldPrepareNext(cur.issuedAt, cur.notAfter, now) {
		s, err := c.newJWTSlot(ctx, otherSlotID(cur.slotID), now)
		if err != nil {
			return err
		}
		st.jwtNext = s
		if err := c.commit(ctx, st); err != nil {
			return err
		}
	}
	if st.jwtNext != nil && st.jwtNext.status == StatusPrepared && shouldActivateNext(cur.issuedAt, cur.notAfter, now) {
		return c.activateJWT(ctx, st)
	}
	return nil
}

// activateX509 makes the prepared CA active and the active one old.
func (c *CA) activateX509(ctx context.Context, st state) error {
	next, cur := st.x509Next, st.x509Cur
	st.x509Cur = next.withStatus(StatusActive)
	st.x509Next = nil
	if cur != nil {
		st.x509Next = cur.withStatus(StatusOld)
	}
	if err := c.commit(ctx, st); err != nil {
		return err
	}
	c.logX509("X509 CA activated", st.x509Cur)
	return nil
}

// activateJWT makes the prepared JWT key active and the active one old.
func (c *CA) activateJWT(ctx context.Context, st state) error {
	next, cur := st.jwtNext, st.jwtCur
	st.jwtCur = next.withStatus(StatusActive)
	st.jwtNext = nil
	if cur != nil {
		st.jwtNext = cur.withStatus(StatusOld)
	}
	if err := c.commit(ctx, st); err != nil {
		return err
	}
	c.logJWT("JWT key activated", st.jwtCur)
	return nil
}

// newX509Slot creates a prepared X.509 CA in slotID: a new key, a
// self-signed or upstream-signed certificate, and the trust bundle updated
// with the new root (self-signed) or the upstream roots, before the CA can
// sign anything (SPIFFE Federation §4.1).
func (c *CA) newX509Slot(ctx context.Context, slotID string, now time.Time) (*x509Slot, error) {
	signer, err := c.c.KeyManager.GenerateKey(ctx, x509KeyID(slotID), c.c.KeyType)
	if err != nil {
		return nil, fmt.Errorf("ca: generate X509 CA key: %w", err)
	}
	var cert *x509.Certificate
	var chain, roots []*x509.Certificate
	if c.c.Upstream != nil {
		tmpl, err := c.caTemplate(signer.Public(), now)
		if err != nil {
			return nil, err
		}
		var upChain []*x509.Certificate
		cert, upChain, roots, err = c.c.Upstream.signCA(tmpl, now)
		if err != nil {
			return nil, err
		}
		chain = append([]*x509.Certificate{cert}, upChain...)
	} else {
		if cert, err = c.selfSignCA(signer, now); err != nil {
			return nil, err
		}
		roots = []*x509.Certificate{cert}
	}
	leaf, err := newLeafSigner(cert, signer)
	if err != nil {
		return nil, err
	}
	b := &datastore.Bundle{TrustDomain: c.tdID()}
	for _, r := range roots {
		b.X509Authorities = append(b.X509Authorities, datastore.X509Authority{Certificate: r.Raw})
	}
	if _, err := c.c.Store.AppendBundle(ctx, b); err != nil {
		return nil, fmt.Errorf("ca: publish X509 CA in bundle: %w", err)
	}
	s := &x509Slot{slotID: slotID, status: StatusPrepared, issuedAt: now, cert: cert, chain: chain, signer: signer,
		id: AuthorityIDFromSKID(cert.SubjectKeyId), upstreamID: upstreamIDOf(cert, c.c.Upstream != nil), leaf: leaf}
	c.logX509("X509 CA prepared", s)
	return s, nil
}

// newJWTSlot creates a prepared JWT key in slotID, expiring after CATTL, and
// publishes its public key in the trust bundle before use.
func (c *CA) newJWTSlot(ctx context.Context, slotID string, now time.Time) (*jwtSlot, error) {
	signer, err := c.c.KeyManager.GenerateKey(ctx, jwtKeyID(slotID), c.c.JWTKeyType)
	if err != nil {
		return nil, fmt.Errorf("ca: generate JWT key: %w", err)
	}
	kid, err := newKeyID()
	if err != nil {
		return nil, err
	}
	js, err := newJoseSigner(signer, kid)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: marshal JWT public key: %w", err)
	}
	notAfter := now.Add(c.c.CATTL)
	if _, err := c.c.Store.AppendBundle(ctx, &datastore.Bundle{
		TrustDomain:    c.tdID(),
		JWTAuthorities: []datastore.JWTAuthority{{KeyID: kid, PublicKey: pub, ExpiresAt: notAfter.Unix()}},
	}); err != nil {
		return nil, fmt.Errorf("ca: publish JWT key in bundle: %w", err)
	}
	s := &jwtSlot{slotID: slotID, status: StatusPrepared, issuedAt: now, notAfter: notAfter, kid: kid, signer: signer, jose: js}
	c.logJWT("JWT key prepared", s)
	return s, nil
}
