package cache

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Identity is an entry with the X509-SVID signed for it.
type Identity struct {
	Entry *Entry
	SVID  *SVID
}

// Update is the full state a workload is entitled to. It is immutable.
type Update struct {
	// Identities are the matching entries that have a servable X509-SVID,
	// ordered by entry ID (SPIRE's order; the first is the default identity).
	Identities []Identity
	// Bundle is the agent's own trust bundle; nil until the first SetBundle.
	Bundle *spiffebundle.Bundle
	// FederatedBundles are the stored bundles of the trust domains the
	// identities federate with.
	FederatedBundles map[spiffeid.TrustDomain]*spiffebundle.Bundle
}

// HasIdentity reports whether the workload has at least one identity.
func (u *Update) HasIdentity() bool { return len(u.Identities) > 0 }

// sameAs reports whether u and o carry the same identities and bundles.
// Stored values are replaced, never modified, so pointers decide.
func (u *Update) sameAs(o *Update) bool {
	if o == nil || u.Bundle != o.Bundle || len(u.Identities) != len(o.Identities) ||
		len(u.FederatedBundles) != len(o.FederatedBundles) {
		return false
	}
	for i, id := range u.Identities {
		if id != o.Identities[i] {
			return false
		}
	}
	return maps.Equal(u.FederatedBundles, o.FederatedBundles)
}

// Subscription follows the Update of one selector set. Its methods are
// safe for concurrent use.
type Subscription struct {
	c         *Cache
	selectors map[string]struct{}
	notify    chan struct{}
	latest    atomic.Pointer[Update]
	closeOnce sync.Once
}

// Subscribe starts following the Update of a workload with selectors.
// Updates has a pending signal right away, so the first read of Latest
// happens without waiting for a change. Close the subscription when done.
func (c *Cache) Subscribe(selectors []string) *Subscription {
	s := &Subscription{
		c:         c,
		selectors: selectorSet(selectors),
		notify:    make(chan struct{}, 1),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.latest.Store(c.buildUpdate(s.selectors))
	s.notify <- struct{}{}
	c.subs[s] = struct{}{}
	for sel := range s.selectors {
		m, ok := c.subsBySelector[sel]
		if !ok {
			m = make(map[*Subscription]struct{})
			c.subsBySelector[sel] = m
		}
		m[s] = struct{}{}
	}
	return s
}

// Updates returns a channel that receives a value after the subscription's
// Update changed. Signals coalesce: one value may stand for many changes, so
// the reader calls Latest after each receive.
func (s *Subscription) Updates() <-chan struct{} { return s.notify }

// Latest returns the current Update of the subscription.
func (s *Subscription) Latest() *Update { return s.latest.Load() }

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		c := s.c
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.subs, s)
		for sel := range s.selectors {
			if m, ok := c.subsBySelector[sel]; ok {
				delete(m, s)
				if len(m) == 0 {
					delete(c.subsBySelector, sel)
				}
			}
		}
	})
}

// subscribersOf returns the subscribers that match at least one of entries.
// Callers hold c.mu.
func (c *Cache) subscribersOf(entries []*Entry) map[*Subscription]struct{} {
	if len(entries) == 0 || len(c.subs) == 0 {
		return nil
	}
	out := make(map[*Subscription]struct{})
	for _, e := range entries {
		if len(e.Selectors) == 0 {
			continue
		}
		// A matching subscriber has every selector of e, so the first one
		// is enough to find the candidates.
		for s := range c.subsBySelector[e.Selectors[0]] {
			if _, done := out[s]; !done && subset(e.Selectors, s.selectors) {
				out[s] = struct{}{}
			}
		}
	}
	return out
}

// refresh recomputes the Update of subs and signals those that changed.
// Callers hold c.mu for writing.
func (c *Cache) refresh(subs map[*Subscription]struct{}) {
	for s := range subs {
		u := c.buildUpdate(s.selectors)
		if u.sameAs(s.latest.Load()) {
			continue
		}
		s.latest.Store(u)
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// buildUpdate computes the Update of a selector set. Callers hold c.mu.
func (c *Cache) buildUpdate(set map[string]struct{}) *Update {
	u := &Update{Bundle: c.bundles[c.td]}
	for _, r := range c.matching(set) {
		if !r.usable() {
			continue
		}
		u.Identities = append(u.Identities, Identity{Entry: r.entry, SVID: r.svid})
		for _, td := range r.entry.FederatesWith {
			if b, ok := c.bundles[td]; ok && td != c.td {
				if u.FederatedBundles == nil {
					u.FederatedBundles = make(map[spiffeid.TrustDomain]*spiffebundle.Bundle)
				}
				u.FederatedBundles[td] = b
			}
		}
	}
	return u
}
