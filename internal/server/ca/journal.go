package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// journal is the CA's persisted state, stored as JSON under the "server"
// key with Store.SetCAJournal. It names the slots and their statuses; the
// private keys stay in the KeyManager under x509-CA-<slot> and
// JWT-Signer-<slot>. One SetCAJournal call replaces it whole, so a crash
// leaves the previous or the next state, never a mix (threat T16).
type journal struct {
	Version int             `json:"version"`
	X509CAs []journalX509   `json:"x509_cas"`
	JWTKeys []journalJWTKey `json:"jwt_keys"`
}

type journalX509 struct {
	SlotID              string    `json:"slot_id"`
	Status              string    `json:"status"`
	IssuedAt            time.Time `json:"issued_at"`
	Certificate         []byte    `json:"certificate"`
	Chain               [][]byte  `json:"chain,omitempty"`
	AuthorityID         string    `json:"authority_id"`
	UpstreamAuthorityID string    `json:"upstream_authority_id,omitempty"`
}

type journalJWTKey struct {
	SlotID    string    `json:"slot_id"`
	Status    string    `json:"status"`
	IssuedAt  time.Time `json:"issued_at"`
	NotAfter  time.Time `json:"not_after"`
	KeyID     string    `json:"kid"`
	PublicKey []byte    `json:"public_key"` // PKIX DER
}

const journalVersion = 1

// state is one consistent set of slots; commit persists and installs it.
type state struct {
	x509Cur, x509Next *x509Slot
	jwtCur, jwtNext   *jwtSlot
}

func (c *CA) current() state {
	return state{x509Cur: c.x509Cur, x509Next: c.x509Next, jwtCur: c.jwtCur, jwtNext: c.jwtNext}
}

// commit writes st to the journal and, only if that worked, makes it the
// CA's state. Callers hold c.mu.
func (c *CA) commit(ctx context.Context, st state) error {
	j := journal{Version: journalVersion, X509CAs: []journalX509{}, JWTKeys: []journalJWTKey{}}
	for _, s := range []*x509Slot{st.x509Cur, st.x509Next} {
		if s == nil {
			continue
		}
		e := journalX509{SlotID: s.slotID, Status: s.status, IssuedAt: s.issuedAt.UTC(), Certificate: s.cert.Raw,
			AuthorityID: s.id, UpstreamAuthorityID: s.upstreamID}
		for _, cert := range s.chain {
			e.Chain = append(e.Chain, cert.Raw)
		}
		j.X509CAs = append(j.X509CAs, e)
	}
	for _, s := range []*jwtSlot{st.jwtCur, st.jwtNext} {
		if s == nil {
			continue
		}
		pub, err := x509.MarshalPKIXPublicKey(s.signer.Public())
		if err != nil {
			return fmt.Errorf("ca: journal: %w", err)
		}
		j.JWTKeys = append(j.JWTKeys, journalJWTKey{SlotID: s.slotID, Status: s.status, IssuedAt: s.issuedAt.UTC(),
			NotAfter: s.notAfter.UTC(), KeyID: s.kid, PublicKey: pub})
	}
	data, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("ca: journal: %w", err)
	}
	if err := c.c.Store.SetCAJournal(ctx, c.journalKey(), data); err != nil {
		return fmt.Errorf("ca: write journal: %w", err)
	}
	c.x509Cur, c.x509Next, c.jwtCur, c.jwtNext = st.x509Cur, st.x509Next, st.jwtCur, st.jwtNext
	if s := st.x509Cur; s != nil && s.status == StatusActive {
		c.signX509.Store(s)
	} else {
		c.signX509.Store(nil)
	}
	if s := st.jwtCur; s != nil && s.status == StatusActive {
		c.signJWT.Store(s)
	} else {
		c.signJWT.Store(nil)
	}
	return nil
}

// load reads the journal and returns the slots that are still usable at
// now: not expired, key present in the KeyManager and matching, and (as
// SPIRE checks against datastore restores and tampering) published in the
// bundle: a self-signed CA certificate or a JWT key ID the bundle does not
// hold is not used (threat T16). An ACTIVE entry becomes current; a
// PREPARED one becomes next, or current when there is no ACTIVE one.
func (c *CA) load(ctx context.Context, now time.Time) (state, error) {
	var st state
	data, err := c.c.Store.FetchCAJournal(ctx, c.journalKey())
	if errors.Is(err, datastore.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("ca: read journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil {
		return st, fmt.Errorf("ca: decode journal: %w", err)
	}
	if j.Version != journalVersion {
		return st, fmt.Errorf("ca: journal version %d is not supported", j.Version)
	}
	bundle, err := c.c.Store.FetchBundle(ctx, c.tdID())
	if err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return st, fmt.Errorf("ca: fetch bundle: %w", err)
	}

	for _, e := range j.X509CAs {
		s, reason, err := c.loadX509(ctx, e, bundle, now)
		if err != nil {
			return st, err
		}
		if reason != "" {
			c.log.Warn("X509 CA slot unusable", "slot", e.SlotID, "local_authority_id", e.AuthorityID, "reason", reason)
			continue
		}
		switch s.status {
		case StatusActive:
			st.x509Cur = s
		case StatusPrepared, StatusOld:
			st.x509Next = s
		}
	}
	if st.x509Cur == nil && st.x509Next != nil && st.x509Next.status == StatusPrepared {
		st.x509Cur, st.x509Next = st.x509Next, nil
	}
	if st.x509Cur != nil && st.x509Next != nil && st.x509Cur.slotID == st.x509Next.slotID {
		st.x509Next = nil
	}

	for _, e := range j.JWTKeys {
		s, reason, err := c.loadJWT(ctx, e, bundle, now)
		if err != nil {
			return st, err
		}
		if reason != "" {
			c.log.Warn("JWT key slot unusable", "slot", e.SlotID, "local_authority_id", e.KeyID, "reason", reason)
			continue
		}
		switch s.status {
		case StatusActive:
			st.jwtCur = s
		case StatusPrepared, StatusOld:
			st.jwtNext = s
		}
	}
	if st.jwtCur == nil && st.jwtNext != nil && st.jwtNext.status == StatusPrepared {
		st.jwtCur, st.jwtNext = st.jwtNext, nil
	}
	if st.jwtCur != nil && st.jwtNext != nil && st.jwtCur.slotID == st.jwtNext.slotID {
		st.jwtNext = nil
	}
	if st.x509Cur != nil {
		st.x509Cur = st.x509Cur.withStatus(StatusActive)
	}
	if st.jwtCur != nil {
		st.jwtCur = st.jwtCur.withStatus(StatusActive)
	}
	return st, nil
}

func (c *CA) loadX509(ctx context.Context, e journalX509, bundle *datastore.Bundle, now time.Time) (*x509Slot, string, error) {
	if e.SlotID != "A" && e.SlotID != "B" {
		return nil, "bad slot id", nil
	}
	cert, err := x509.ParseCertificate(e.Certificate)
	if err != nil {
		return nil, "", fmt.Errorf("ca: journal: parse X509 CA certificate: %w", err)
	}
	if !now.Before(cert.NotAfter) {
		return nil, "slot expired", nil
	}
	var chain []*x509.Certificate
	for _, der := range e.Chain {
		cc, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, "", fmt.Errorf("ca: journal: parse X509 CA chain: %w", err)
		}
		chain = append(chain, cc)
	}
	signer, reason, err := c.keyFor(ctx, x509KeyID(e.SlotID), cert.PublicKey)
	if err != nil || reason != "" {
		return nil, reason, err
	}
	if c.c.Upstream == nil && !bundleHasX509(bundle, cert.Raw) {
		return nil, "certificate is not in the trust bundle", nil
	}
	leaf, err := newLeafSigner(cert, signer)
	if err != nil {
		return nil, "", err
	}
	return &x509Slot{slotID: e.SlotID, status: e.Status, issuedAt: e.IssuedAt, cert: cert, chain: chain, signer: signer,
		id: AuthorityIDFromSKID(cert.SubjectKeyId), upstreamID: upstreamIDOf(cert, c.c.Upstream != nil), leaf: leaf}, "", nil
}

func (c *CA) loadJWT(ctx context.Context, e journalJWTKey, bundle *datastore.Bundle, now time.Time) (*jwtSlot, string, error) {
	if e.SlotID != "A" && e.SlotID != "B" {
		return nil, "bad slot id", nil
	}
	if !now.Before(e.NotAfter) {
		return nil, "slot expired", nil
	}
	pub, err := x509.ParsePKIXPublicKey(e.PublicKey)
	if err != nil {
		return nil, "", fmt.Errorf("ca: journal: parse JWT public key: %w", err)
	}
	signer, reason, err := c.keyFor(ctx, jwtKeyID(e.SlotID), pub)
	if err != nil || reason != "" {
		return nil, reason, err
	}
	if !bundleHasJWTKey(bundle, e.KeyID) {
		return nil, "key ID is not in the trust bundle", nil
	}
	js, err := newJoseSigner(signer, e.KeyID)
	if err != nil {
		return nil, "", err
	}
	return &jwtSlot{slotID: e.SlotID, status: e.Status, issuedAt: e.IssuedAt, notAfter: e.NotAfter, kid: e.KeyID, signer: signer, jose: js}, "", nil
}

// keyFor returns the KeyManager key id if it matches pub; a missing or
// different key is a reason to skip the slot, not an error.
func (c *CA) keyFor(ctx context.Context, id string, pub crypto.PublicKey) (crypto.Signer, string, error) {
	signer, err := c.c.KeyManager.GetKey(ctx, id)
	if errors.Is(err, ErrKeyNotFound) {
		return nil, "no key manager key", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("ca: key manager: %w", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if k, ok := signer.Public().(equaler); !ok || !k.Equal(pub) {
		return nil, "public key does not match key manager key", nil
	}
	return signer, "", nil
}

func bundleHasX509(b *datastore.Bundle, der []byte) bool {
	if b == nil {
		return false
	}
	for _, a := range b.X509Authorities {
		if bytes.Equal(a.Certificate, der) {
			return true
		}
	}
	return false
}

func bundleHasJWTKey(b *datastore.Bundle, kid string) bool {
	if b == nil {
		return false
	}
	for _, a := range b.JWTAuthorities {
		if a.KeyID == kid {
			return true
		}
	}
	return false
}

func upstreamIDOf(cert *x509.Certificate, upstream bool) string {
	if !upstream {
		return ""
	}
	return AuthorityIDFromSKID(cert.AuthorityKeyId)
}

func (s *x509Slot) withStatus(status string) *x509Slot {
	n := *s
	n.status = status
	return &n
}

func (s *jwtSlot) withStatus(status string) *jwtSlot {
	n := *s
	n.status = status
	return &n
}

func (c *CA) logX509(msg string, s *x509Slot) {
	c.log.Info(msg, slog.String("slot", s.slotID), slog.Time("issued_at", s.issuedAt), slog.Time("expiration", s.cert.NotAfter),
		slog.Bool("self_signed", c.c.Upstream == nil), slog.String("local_authority_id", s.id),
		slog.String("upstream_authority_id", s.upstreamID))
}

func (c *CA) logJWT(msg string, s *jwtSlot) {
	c.log.Info(msg, slog.String("slot", s.slotID), slog.Time("issued_at", s.issuedAt), slog.Time("expiration", s.notAfter),
		slog.String("local_authority_id", s.kid))
}

// journalKey is the row this CA's journal lives in.
func (c *CA) journalKey() string {
	if c.c.JournalKey != "" {
		return c.c.JournalKey
	}
	return defaultJournalKey
}
