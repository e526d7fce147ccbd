package cache

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/singleflight"
)

// DefaultMaxJWTSVIDs is the default bound of the JWT-SVID cache (SPIRE's
// default SVID cache size).
const DefaultMaxJWTSVIDs = 1000

// Config configures a Cache.
type Config struct {
	// TrustDomain is the agent's trust domain; its bundle is the one sent
	// with every X509-SVID. Required.
	TrustDomain spiffeid.TrustDomain
	// JWTSigner signs JWT-SVIDs on a cache miss or refresh. Nil: only
	// JWT-SVIDs already in the cache are served.
	JWTSigner JWTSigner
	// MaxJWTSVIDs bounds the number of cached JWT-SVIDs; the least recently
	// used one is evicted. Zero means DefaultMaxJWTSVIDs.
	MaxJWTSVIDs int
	// Clock returns the current time for JWT-SVID freshness. Nil: time.Now.
	Clock func() time.Time
	// Logger receives warnings (duplicate entries, JWT renewal failures).
	// Nil: discarded.
	Logger *slog.Logger
}

// Cache is the agent's identity cache. Its methods are safe for concurrent
// use. The zero value is not usable; call New.
type Cache struct {
	td     spiffeid.TrustDomain
	clock  func() time.Time
	log    *slog.Logger
	signer JWTSigner

	mu             sync.RWMutex
	records        map[string]*record
	bySelector     map[string]map[*record]struct{}
	bundles        map[spiffeid.TrustDomain]*spiffebundle.Bundle
	intermediates  map[[sha256.Size]byte]*sharedCert
	subs           map[*Subscription]struct{}
	subsBySelector map[string]map[*Subscription]struct{}

	jwt    jwtStore
	flight singleflight.Group
}

type record struct {
	entry *Entry
	svid  *SVID
}

// usable reports whether the record's SVID may be served for its entry: an
// SVID whose ID is not the entry's (the entry's SPIFFE ID was changed) is
// not served until it is re-signed.
func (r *record) usable() bool {
	return r.svid != nil && r.svid.ID == r.entry.SPIFFEID
}

type sharedCert struct {
	cert *x509.Certificate
	refs int
}

// New returns an empty Cache.
func New(cfg Config) (*Cache, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, wrapErr(errors.New("trust domain is required"))
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxJWTSVIDs <= 0 {
		cfg.MaxJWTSVIDs = DefaultMaxJWTSVIDs
	}
	return &Cache{
		td:             cfg.TrustDomain,
		clock:          cfg.Clock,
		log:            cfg.Logger,
		signer:         cfg.JWTSigner,
		records:        make(map[string]*record),
		bySelector:     make(map[string]map[*record]struct{}),
		bundles:        make(map[spiffeid.TrustDomain]*spiffebundle.Bundle),
		intermediates:  make(map[[sha256.Size]byte]*sharedCert),
		subs:           make(map[*Subscription]struct{}),
		subsBySelector: make(map[string]map[*Subscription]struct{}),
		jwt:            newJWTStore(cfg.MaxJWTSVIDs),
	}, nil
}

// TrustDomain returns the agent's trust domain.
func (c *Cache) TrustDomain() spiffeid.TrustDomain { return c.td }

// SetEntries replaces the set of authorized entries. Unchanged entries keep
// their SVIDs; removed entries lose theirs; a changed entry keeps serving
// its SVID (if the SPIFFE ID is unchanged) until StaleEntries reports it and
// a new one is set. Entries with a duplicate ID after the first are ignored.
// Subscribers whose identity set changed are notified.
func (c *Cache) SetEntries(entries []*Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()

	var changed []*Entry
	seen := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		if e == nil {
			continue
		}
		if _, dup := seen[e.ID]; dup {
			c.log.Warn("Ignoring duplicate entry", "entry_id", e.ID)
			continue
		}
		seen[e.ID] = struct{}{}
		r, ok := c.records[e.ID]
		switch {
		case !ok:
			r = &record{entry: e}
			c.records[e.ID] = r
			c.index(r)
			changed = append(changed, e)
		case !r.entry.equal(e):
			changed = append(changed, r.entry, e)
			c.unindex(r)
			r.entry = e
			c.index(r)
		}
	}
	var removed bool
	for id, r := range c.records {
		if _, ok := seen[id]; ok {
			continue
		}
		changed = append(changed, r.entry)
		c.unindex(r)
		c.release(r.svid)
		delete(c.records, id)
		removed = true
	}
	if removed {
		ids := make(map[spiffeid.ID]struct{}, len(c.records))
		for _, r := range c.records {
			ids[r.entry.SPIFFEID] = struct{}{}
		}
		c.jwt.retain(func(id spiffeid.ID) bool { _, ok := ids[id]; return ok })
	}
	c.refresh(c.subscribersOf(changed))
}

// SetSVIDs stores X509-SVIDs by entry ID. SVIDs for unknown entries, and
// SVIDs without a certificate or with a key that cannot be encoded, are
// ignored (and logged). The cache keeps a compact copy (see SVID) whose
// intermediates are shared with the other SVIDs; the arguments are not
// retained. Subscribers whose identity set changed are notified.
func (c *Cache) SetSVIDs(svids map[string]*X509SVID) {
	c.mu.Lock()
	defer c.mu.Unlock()

	var changed []*Entry
	for entryID, svid := range svids {
		r, ok := c.records[entryID]
		if !ok {
			continue
		}
		stored, err := c.store(svid)
		if err != nil {
			c.log.Warn("Ignoring X509-SVID", "entry_id", entryID, "error", err)
			continue
		}
		c.release(r.svid)
		r.svid = stored
		changed = append(changed, r.entry)
	}
	c.refresh(c.subscribersOf(changed))
}

// store converts svid to its stored form. Callers hold c.mu.
func (c *Cache) store(svid *X509SVID) (*SVID, error) {
	if svid == nil || len(svid.Chain) == 0 || svid.Key == nil {
		return nil, wrapErr(errors.New("X509-SVID without certificate or key"))
	}
	key, err := x509.MarshalPKCS8PrivateKey(svid.Key)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("encode X509-SVID key: %w", err))
	}
	leaf := svid.Chain[0]
	out := &SVID{
		NotBefore:     leaf.NotBefore,
		NotAfter:      leaf.NotAfter,
		EntryRevision: svid.EntryRevision,
		leaf:          bytes.Clone(leaf.Raw), // Raw may alias a larger buffer
		key:           key,
	}
	if len(leaf.URIs) == 1 {
		if id, err := spiffeid.FromURI(leaf.URIs[0]); err == nil {
			out.ID = id
		}
	}
	if len(svid.Chain) > 1 {
		out.intermediates = make([]*x509.Certificate, len(svid.Chain)-1)
		for i, cert := range svid.Chain[1:] {
			out.intermediates[i] = c.intern(cert)
		}
	}
	return out, nil
}

// SetBundle stores the bundle of its trust domain: the agent's own bundle or
// a federated one. A bundle equal to the stored one changes nothing.
// Subscribers whose bundles changed are notified.
func (c *Cache) SetBundle(b *spiffebundle.Bundle) {
	if b == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	td := b.TrustDomain()
	if old, ok := c.bundles[td]; ok && old.Equal(b) {
		return
	}
	c.bundles[td] = b
	c.refresh(c.subs)
}

// RemoveBundle removes a federated bundle. The agent's own bundle cannot be
// removed. Subscribers whose bundles changed are notified.
func (c *Cache) RemoveBundle(td spiffeid.TrustDomain) {
	if td == c.td {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.bundles[td]; !ok {
		return
	}
	delete(c.bundles, td)
	c.refresh(c.subs)
}

// Bundle returns the stored bundle of td, or nil.
func (c *Cache) Bundle(td spiffeid.TrustDomain) *spiffebundle.Bundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bundles[td]
}

// Entries returns all authorized entries, ordered by entry ID.
func (c *Cache) Entries() []*Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Entry, 0, len(c.records))
	for _, r := range c.records {
		out = append(out, r.entry)
	}
	slices.SortFunc(out, func(a, b *Entry) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// EntryCount returns the number of authorized entries in the cache.
func (c *Cache) EntryCount() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.records)
}

// Validity is the SPIFFE ID and validity period of one cached X509-SVID.
type Validity struct {
	ID                  spiffeid.ID
	NotBefore, NotAfter time.Time
}

// X509SVIDValidity returns the SPIFFE ID and validity period of every
// X509-SVID the cache serves (one per entry holding a usable SVID), in no
// particular order. It copies no key or certificate: the agent's metrics
// read it on every scrape.
func (c *Cache) X509SVIDValidity() []Validity {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Validity, 0, len(c.records))
	for _, r := range c.records {
		if r.usable() {
			out = append(out, Validity{ID: r.svid.ID, NotBefore: r.svid.NotBefore, NotAfter: r.svid.NotAfter})
		}
	}
	return out
}

// MatchingEntries returns the entries whose selectors are all among
// selectors, ordered by entry ID, whether or not they have an X509-SVID
// (JWT-SVIDs are signed per request).
func (c *Cache) MatchingEntries(selectors []string) []*Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	recs := c.matching(selectorSet(selectors))
	out := make([]*Entry, len(recs))
	for i, r := range recs {
		out[i] = r.entry
	}
	return out
}

// Snapshot returns the current Update for a workload with selectors.
func (c *Cache) Snapshot(selectors []string) *Update {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.buildUpdate(selectorSet(selectors))
}

// StaleEntry is an entry that needs a new X509-SVID.
type StaleEntry struct {
	Entry *Entry
	// SVIDExpiresAt is the expiry of the current SVID; zero if there is none.
	SVIDExpiresAt time.Time
}

// StaleEntries returns the entries that need an X509-SVID at now: those
// without one, those whose SVID was signed for an older revision or another
// SPIFFE ID, and those past half of their SVID's lifetime. Entries without an
// SVID come first (by entry ID), then by SVID expiry, so a caller that signs
// in batches of limited size serves the most urgent first.
func (c *Cache) StaleEntries(now time.Time) []StaleEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []StaleEntry
	for _, r := range c.records {
		switch {
		case r.svid == nil:
			out = append(out, StaleEntry{Entry: r.entry})
		case r.svid.EntryRevision != r.entry.RevisionNumber,
			r.svid.ID != r.entry.SPIFFEID,
			ShouldRotateX509(now, r.svid.NotBefore, r.svid.NotAfter):
			out = append(out, StaleEntry{Entry: r.entry, SVIDExpiresAt: r.svid.NotAfter})
		}
	}
	slices.SortFunc(out, func(a, b StaleEntry) int {
		if c := a.SVIDExpiresAt.Compare(b.SVIDExpiresAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Entry.ID, b.Entry.ID)
	})
	return out
}

// NextX509Rotation returns the earliest time at which an entry becomes
// stale: the half-life of the SVID closest to it, or the zero time when an
// entry is already stale for another reason (no SVID, outdated revision).
// ok is false when there are no entries.
func (c *Cache) NextX509Rotation() (next time.Time, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, r := range c.records {
		var t time.Time
		if r.usable() && r.svid.EntryRevision == r.entry.RevisionNumber {
			t = r.svid.NotBefore.Add(r.svid.NotAfter.Sub(r.svid.NotBefore) / 2)
		}
		if !ok || t.Before(next) {
			next, ok = t, true
		}
	}
	return next, ok
}

// intern returns the shared copy of cert. Callers hold c.mu.
func (c *Cache) intern(cert *x509.Certificate) *x509.Certificate {
	key := sha256.Sum256(cert.Raw)
	if sc, ok := c.intermediates[key]; ok {
		sc.refs++
		return sc.cert
	}
	c.intermediates[key] = &sharedCert{cert: cert, refs: 1}
	return cert
}

// release drops svid's references to shared intermediates. Callers hold c.mu.
func (c *Cache) release(svid *SVID) {
	if svid == nil {
		return
	}
	for _, cert := range svid.intermediates {
		key := sha256.Sum256(cert.Raw)
		if sc, ok := c.intermediates[key]; ok {
			if sc.refs--; sc.refs <= 0 {
				delete(c.intermediates, key)
			}
		}
	}
}

func (c *Cache) index(r *record) {
	for _, s := range r.entry.Selectors {
		m, ok := c.bySelector[s]
		if !ok {
			m = make(map[*record]struct{})
			c.bySelector[s] = m
		}
		m[r] = struct{}{}
	}
}

func (c *Cache) unindex(r *record) {
	for _, s := range r.entry.Selectors {
		if m, ok := c.bySelector[s]; ok {
			delete(m, r)
			if len(m) == 0 {
				delete(c.bySelector, s)
			}
		}
	}
}

// matching returns the records whose selectors are a subset of set,
// ordered by entry ID. Callers hold c.mu.
func (c *Cache) matching(set map[string]struct{}) []*record {
	var cands map[*record]struct{}
	for s := range set {
		for r := range c.bySelector[s] {
			if cands == nil {
				cands = make(map[*record]struct{})
			}
			cands[r] = struct{}{}
		}
	}
	out := make([]*record, 0, len(cands))
	for r := range cands {
		if subset(r.entry.Selectors, set) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *record) int { return cmp.Compare(a.entry.ID, b.entry.ID) })
	return out
}

func subset(selectors []string, set map[string]struct{}) bool {
	if len(selectors) == 0 {
		return false
	}
	for _, s := range selectors {
		if _, ok := set[s]; !ok {
			return false
		}
	}
	return true
}

func selectorSet(selectors []string) map[string]struct{} {
	set := make(map[string]struct{}, len(selectors))
	for _, s := range selectors {
		set[s] = struct{}{}
	}
	return set
}
