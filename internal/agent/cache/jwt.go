package cache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrNoJWTSigner is returned by FetchJWTSVID when a JWT-SVID must be signed
// and the cache has no JWTSigner.
var ErrNoJWTSigner = errors.New("cache: no JWT-SVID signer")

// JWTSVID is a signed JWT-SVID with the times the cache needs to decide
// when to refresh it.
type JWTSVID struct {
	Token     string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// JWTSigner signs JWT-SVIDs for entries (the agent's svid.v1 NewJWTSVID
// client).
type JWTSigner interface {
	NewJWTSVID(ctx context.Context, entry *Entry, audience []string) (*JWTSVID, error)
}

// ShouldRefreshJWT reports whether a JWT-SVID should be replaced at now: it
// has expired or less than half of its lifetime remains.
func ShouldRefreshJWT(now time.Time, svid *JWTSVID) bool {
	ttl := svid.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return true
	}
	return ttl <= svid.ExpiresAt.Sub(svid.IssuedAt)/2
}

// FetchJWTSVID returns a JWT-SVID for entry and audience: the cached one
// while it has more than half of its lifetime left, otherwise a new one from
// the JWTSigner (one signing call per SPIFFE ID and audience set at a time).
// When signing fails, the cached token is returned while it is unexpired,
// so workloads keep their JWT-SVIDs through a server outage.
func (c *Cache) FetchJWTSVID(ctx context.Context, entry *Entry, audience []string) (*JWTSVID, error) {
	key := jwtKey(entry.SPIFFEID, audience)
	now := c.clock()
	cached, ok := c.jwt.get(key)
	if ok && !ShouldRefreshJWT(now, cached) {
		return cached, nil
	}
	svid, err := c.signJWT(ctx, key, entry, audience)
	switch {
	case err == nil:
		return svid, nil
	case ok && now.Before(cached.ExpiresAt):
		c.log.Warn("Unable to renew JWT-SVID; returning cached copy", "spiffe_id", entry.SPIFFEID.String(), "error", err)
		return cached, nil
	default:
		return nil, err
	}
}

// RefreshJWTSVIDs renews the cached JWT-SVIDs that are past half of their
// lifetime at now, so they stay fresh ahead of expiry; tokens whose entry is
// gone are dropped. It returns the signing errors, joined.
func (c *Cache) RefreshJWTSVIDs(ctx context.Context, now time.Time) error {
	var errs []error
	for _, it := range c.jwt.due(now) {
		c.mu.RLock()
		r, ok := c.records[it.entryID]
		c.mu.RUnlock()
		if !ok || r.entry.SPIFFEID != it.id {
			c.jwt.remove(it.key)
			continue
		}
		if _, err := c.signJWT(ctx, it.key, r.entry, it.audience); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NextJWTRefresh returns the earliest half-life among cached JWT-SVIDs; ok is
// false when none is cached.
func (c *Cache) NextJWTRefresh() (time.Time, bool) { return c.jwt.next() }

func (c *Cache) signJWT(ctx context.Context, key string, entry *Entry, audience []string) (*JWTSVID, error) {
	if c.signer == nil {
		return nil, ErrNoJWTSigner
	}
	v, err, _ := c.flight.Do(key, func() (any, error) {
		svid, err := c.signer.NewJWTSVID(ctx, entry, audience)
		if err != nil {
			return nil, err
		}
		if svid == nil || svid.Token == "" {
			return nil, wrapErr(errors.New("signer returned an empty JWT-SVID"))
		}
		c.jwt.put(key, jwtItem{key: key, entryID: entry.ID, id: entry.SPIFFEID, audience: slices.Clone(audience), svid: svid})
		return svid, nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: sign JWT-SVID for %q: %w", entry.SPIFFEID, err)
	}
	return v.(*JWTSVID), nil
}

// jwtKey is the SHA-256 of the SPIFFE ID and the sorted audience, each
// followed by a NUL byte (SPIRE's cache key).
func jwtKey(id spiffeid.ID, audience []string) string {
	audience = slices.Clone(audience)
	slices.Sort(audience)
	h := sha256.New()
	_, _ = io.WriteString(h, id.String())
	h.Write([]byte{0})
	for _, a := range audience {
		_, _ = io.WriteString(h, a)
		h.Write([]byte{0})
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

type jwtItem struct {
	key      string
	entryID  string
	id       spiffeid.ID
	audience []string
	svid     *JWTSVID
}

// jwtStore is a bounded LRU of JWT-SVIDs.
type jwtStore struct {
	mu    sync.Mutex
	max   int
	items map[string]*list.Element
	lru   *list.List // front: most recently used
}

func newJWTStore(maxItems int) jwtStore {
	return jwtStore{max: maxItems, items: make(map[string]*list.Element), lru: list.New()}
}

func (s *jwtStore) get(key string) (*JWTSVID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.items[key]
	if !ok {
		return nil, false
	}
	s.lru.MoveToFront(el)
	return el.Value.(jwtItem).svid, true
}

func (s *jwtStore) put(key string, it jwtItem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.items[key]; ok {
		el.Value = it
		s.lru.MoveToFront(el)
		return
	}
	s.items[key] = s.lru.PushFront(it)
	for s.lru.Len() > s.max {
		last := s.lru.Back()
		delete(s.items, last.Value.(jwtItem).key)
		s.lru.Remove(last)
	}
}

func (s *jwtStore) remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.items[key]; ok {
		delete(s.items, key)
		s.lru.Remove(el)
	}
}

// retain drops the tokens whose SPIFFE ID keep rejects.
func (s *jwtStore) retain(keep func(spiffeid.ID) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, el := range s.items {
		if !keep(el.Value.(jwtItem).id) {
			delete(s.items, key)
			s.lru.Remove(el)
		}
	}
}

func (s *jwtStore) due(now time.Time) []jwtItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []jwtItem
	for _, el := range s.items {
		if it := el.Value.(jwtItem); ShouldRefreshJWT(now, it.svid) {
			out = append(out, it)
		}
	}
	return out
}

func (s *jwtStore) next() (next time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, el := range s.items {
		svid := el.Value.(jwtItem).svid
		t := svid.IssuedAt.Add(svid.ExpiresAt.Sub(svid.IssuedAt) / 2)
		if !ok || t.Before(next) {
			next, ok = t, true
		}
	}
	return next, ok
}

// JWTSVIDCount returns the number of cached JWT-SVIDs.
func (c *Cache) JWTSVIDCount() int {
	c.jwt.mu.Lock()
	defer c.jwt.mu.Unlock()
	return len(c.jwt.items)
}
