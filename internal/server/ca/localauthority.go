package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// The manual operations below follow SPIRE's LocalAuthority API
// (pkg/server/api/localauthority/v1): the same preconditions in the same
// order, each refusal an *AuthorityError carrying SPIRE's status message.
// Kind selects the code: ErrNoActiveAuthority -> Unavailable,
// ErrInvalidAuthorityID -> InvalidArgument, ErrUpstreamConfigured ->
// FailedPrecondition, ErrAuthorityState or no Kind -> Internal.

// revokedExpiry is what SPIRE reports as the expiry of a revoked authority
// (and of a tainted JWT authority): 0.
func revokedExpiry() time.Time { return time.Unix(0, 0).UTC() }

func errInitializing() error {
	return authorityErr(ErrNoActiveAuthority, "server is initializing")
}

// failed wraps an operational failure (key manager, store) with SPIRE's
// message prefix; an *AuthorityError from a bundle callback passes through.
func failed(prefix string, err error) error {
	if ae, ok := errors.AsType[*AuthorityError](err); ok {
		return ae
	}
	return &AuthorityError{Message: prefix + ": " + err.Error(), Err: err}
}

// PrepareX509Authority prepares a new X.509 CA in the next slot, replacing
// a prepared or old one there, and publishes it in the trust bundle.
func (c *CA) PrepareX509Authority(ctx context.Context) (*AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.current()
	if st.x509Cur == nil || st.x509Cur.status != StatusActive {
		return nil, errInitializing()
	}
	s, err := c.newX509Slot(ctx, otherSlotID(st.x509Cur.slotID), c.now())
	if err != nil {
		return nil, failed("failed to prepare X.509 authority", err)
	}
	st.x509Next = s
	if err := c.commit(ctx, st); err != nil {
		return nil, failed("failed to prepare X.509 authority", err)
	}
	return s.info(), nil
}

// ActivateX509Authority makes the prepared X.509 CA with authorityID active;
// the active one becomes old. It returns the new active authority.
func (c *CA) ActivateX509Authority(ctx context.Context, authorityID string) (*AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.current()
	next := st.x509Next
	switch {
	case st.x509Cur == nil:
		return nil, errInitializing()
	case authorityID == "":
		return nil, authorityErr(ErrInvalidAuthorityID, "no authority ID provided")
	case next == nil || authorityID != next.id:
		return nil, authorityErr(ErrInvalidAuthorityID, "unexpected authority ID")
	case next.status != StatusPrepared:
		return nil, authorityErr(ErrAuthorityState, "only Prepared authorities can be activated")
	}
	if err := c.activateX509(ctx, st); err != nil {
		return nil, failed("failed to activate X.509 authority", err)
	}
	return c.x509Cur.info(), nil
}

// TaintX509Authority marks the old X.509 CA with authorityID tainted in the
// trust bundle, so agents rotate the SVIDs it signed. Refused when an
// upstream authority signs the CA.
func (c *CA) TaintX509Authority(ctx context.Context, authorityID string) (*AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c.Upstream != nil {
		return nil, authorityErr(ErrUpstreamConfigured, "local authority can't be tainted if there is an upstream authority")
	}
	cur, next := c.x509Cur, c.x509Next
	switch {
	case cur == nil:
		return nil, errInitializing()
	case authorityID == "":
		return nil, authorityErr(ErrInvalidAuthorityID, "no authority ID provided")
	case authorityID == cur.id:
		return nil, authorityErr(ErrInvalidAuthorityID, "unable to taint current local authority")
	case next == nil || authorityID != next.id:
		return nil, authorityErr(ErrInvalidAuthorityID, "unexpected authority ID")
	case next.status != StatusOld:
		return nil, authorityErr(ErrInvalidAuthorityID, "only Old local authorities can be tainted")
	}
	const prefix = "failed to taint X.509 authority"
	_, err := c.c.Store.UpdateBundleFunc(ctx, c.tdID(), func(b *datastore.Bundle) error {
		found := false
		for i := range b.X509Authorities {
			if x509AuthorityID(b.X509Authorities[i].Certificate) != authorityID {
				continue
			}
			if b.X509Authorities[i].Tainted {
				return authorityErr(ErrAuthorityState, "%s: root CA is already tainted", prefix)
			}
			b.X509Authorities[i].Tainted = true
			found = true
		}
		if !found {
			return authorityErr(ErrAuthorityState, "%s: no ca found with provided subject key ID", prefix)
		}
		return nil
	})
	if err != nil {
		return nil, failed(prefix, err)
	}
	c.log.Info("X.509 authority tainted successfully", "local_authority_id", authorityID)
	return next.info(), nil
}

// RevokeX509Authority removes the old, tainted X.509 CA with authorityID
// from the trust bundle. The authority stays in the old slot until it
// expires or a new one is prepared, as in SPIRE.
func (c *CA) RevokeX509Authority(ctx context.Context, authorityID string) (*AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c.Upstream != nil {
		return nil, authorityErr(ErrUpstreamConfigured, "local authority can't be revoked if there is an upstream authority")
	}
	cur, next := c.x509Cur, c.x509Next
	switch {
	case cur == nil:
		return nil, errInitializing()
	case authorityID == "":
		return nil, authorityErr(ErrInvalidAuthorityID, "invalid authority ID: no authority ID provided")
	case authorityID == cur.id:
		return nil, authorityErr(ErrInvalidAuthorityID, "invalid authority ID: unable to use current authority")
	case next == nil || authorityID != next.id || next.status != StatusOld:
		return nil, authorityErr(ErrInvalidAuthorityID, "invalid authority ID: only Old local authority can be revoked")
	}
	const prefix = "failed to revoke X.509 authority"
	_, err := c.c.Store.UpdateBundleFunc(ctx, c.tdID(), func(b *datastore.Bundle) error {
		i := slices.IndexFunc(b.X509Authorities, func(a datastore.X509Authority) bool {
			return x509AuthorityID(a.Certificate) == authorityID
		})
		switch {
		case i < 0:
			return authorityErr(ErrAuthorityState, "%s: no root CA found with provided subject key ID", prefix)
		case !b.X509Authorities[i].Tainted:
			return authorityErr(ErrAuthorityState, "%s: it is not possible to revoke an untainted root CA", prefix)
		}
		b.X509Authorities = slices.Delete(b.X509Authorities, i, i+1)
		return nil
	})
	if err != nil {
		return nil, failed(prefix, err)
	}
	c.log.Info("X.509 authority revoked successfully", "local_authority_id", authorityID)
	return &AuthorityInfo{AuthorityID: authorityID, ExpiresAt: revokedExpiry(), Status: next.status}, nil
}

// PrepareJWTAuthority prepares a new JWT key in the next slot, replacing a
// prepared or old one there, and publishes it in the trust bundle.
func (c *CA) PrepareJWTAuthority(ctx context.Context) (*AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.current()
	if st.jwtCur == nil || st.jwtCur.status != StatusActive {
		return nil, errInitializing()
	}
	s, err := c.newJWTSlot(ctx, otherSlotID(st.jwtCur.slotID), c.now())
	if err != nil {
		return nil, failed("failed to prepare JWT authority", err)
	}
	st.jwtNext = s
	if err := c.commit(ctx, st); err != nil {
		return nil, failed("failed to prepare JWT authority", err)
	}
	return s.info(), nil
}

// ActivateJWTAuthority makes the prepared JWT key with authorityID active;
// the active one becomes old. It returns the new active authority.
func (c *CA) ActivateJWTAuthority(ctx context.Context, authorityID string) (*AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.current()
	next := st.jwtNext
	switch {
	case st.jwtCur == nil:
		return nil, errInitializing()
	case authorityID == "":
		return nil, authorityErr(ErrInvalidAuthorityID, "no authority ID provided")
	case next == nil || authorityID != next.kid:
		return nil, authorityErr(ErrInvalidAuthorityID, "unexpected authority ID")
	case next.status != StatusPrepared:
		return nil, authorityErr(ErrAuthorityState, "only Prepared authorities can be activated")
	}
	if err := c.activateJWT(ctx, st); err != nil {
		return nil, failed("failed to activate JWT authority", err)
	}
	return c.jwtCur.info(), nil
}

// TaintJWTAuthority marks the old JWT key with authorityID tainted in the
// trust bundle. As SPIRE, the result reports no expiry (time.Unix(0, 0)).
func (c *CA) TaintJWTAuthority(ctx context.Context, authorityID string) (*AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, next := c.jwtCur, c.jwtNext
	switch {
	case cur == nil:
		return nil, errInitializing()
	case authorityID == "":
		return nil, authorityErr(ErrInvalidAuthorityID, "no authority ID provided")
	case authorityID == cur.kid:
		return nil, authorityErr(ErrInvalidAuthorityID, "unable to taint current local authority")
	case next == nil || authorityID != next.kid:
		return nil, authorityErr(ErrInvalidAuthorityID, "unexpected authority ID")
	case next.status != StatusOld:
		return nil, authorityErr(ErrInvalidAuthorityID, "only Old local authorities can be tainted")
	}
	const prefix = "failed to taint JWT authority"
	_, err := c.c.Store.UpdateBundleFunc(ctx, c.tdID(), func(b *datastore.Bundle) error {
		i := slices.IndexFunc(b.JWTAuthorities, func(a datastore.JWTAuthority) bool { return a.KeyID == authorityID })
		switch {
		case i < 0:
			return authorityErr(ErrAuthorityState, "%s: no JWT Key found with provided key ID", prefix)
		case b.JWTAuthorities[i].Tainted:
			return authorityErr(ErrAuthorityState, "%s: key is already tainted", prefix)
		}
		b.JWTAuthorities[i].Tainted = true
		return nil
	})
	if err != nil {
		return nil, failed(prefix, err)
	}
	c.log.Info("JWT authority tainted successfully", "local_authority_id", authorityID)
	return &AuthorityInfo{AuthorityID: authorityID, ExpiresAt: revokedExpiry(), Status: next.status}, nil
}

// RevokeJWTAuthority removes the tainted JWT key with authorityID from the
// trust bundle. As SPIRE, any key in the bundle other than the active and
// the prepared one may be revoked once tainted, not only the old slot's.
func (c *CA) RevokeJWTAuthority(ctx context.Context, authorityID string) (*AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, next := c.jwtCur, c.jwtNext
	switch {
	case cur == nil:
		return nil, errInitializing()
	case authorityID == "":
		return nil, authorityErr(ErrInvalidAuthorityID, "invalid authority ID: no authority ID provided")
	case next != nil && authorityID == next.kid:
		if next.status == StatusPrepared {
			return nil, authorityErr(ErrInvalidAuthorityID, "invalid authority ID: unable to use a prepared key")
		}
	case authorityID == cur.kid:
		return nil, authorityErr(ErrInvalidAuthorityID, "invalid authority ID: unable to use current authority")
	default:
		b, err := c.c.Store.FetchBundle(ctx, c.tdID())
		if err != nil {
			return nil, &AuthorityError{Kind: ErrInvalidAuthorityID, Message: "invalid authority ID: " + err.Error(), Err: err}
		}
		if !bundleHasJWTKey(b, authorityID) {
			return nil, authorityErr(ErrInvalidAuthorityID, "invalid authority ID: no JWT authority found with provided authority ID")
		}
	}
	const prefix = "failed to revoke JWT authority"
	_, err := c.c.Store.UpdateBundleFunc(ctx, c.tdID(), func(b *datastore.Bundle) error {
		i := slices.IndexFunc(b.JWTAuthorities, func(a datastore.JWTAuthority) bool { return a.KeyID == authorityID })
		switch {
		case i < 0:
			return authorityErr(ErrAuthorityState, "%s: no JWT Key found with provided key ID", prefix)
		case !b.JWTAuthorities[i].Tainted:
			return authorityErr(ErrAuthorityState, "%s: it is not possible to revoke an untainted key", prefix)
		}
		b.JWTAuthorities = slices.Delete(b.JWTAuthorities, i, i+1)
		return nil
	})
	if err != nil {
		return nil, failed(prefix, err)
	}
	c.log.Info("JWT authority revoked successfully", "local_authority_id", authorityID)
	return &AuthorityInfo{AuthorityID: authorityID, ExpiresAt: revokedExpiry(), Status: StatusOld}, nil
}

// x509AuthorityID is the authority ID of a bundle certificate, "" if it
// does not parse.
func x509AuthorityID(der []byte) string {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	return AuthorityIDFromSKID(cert.SubjectKeyId)
}
