// Package index keeps the authorized-entry index of the server in memory: for
// every agent, which registration entries it may see and sign. It is fed from
// the datastore change log (not rebuilt per request) and tells subscribed
// agents the moment their authorized set changes.
//
// Authorization follows SPIRE: an agent is authorized for the entries parented
// to its own SPIFFE ID, to the SPIFFE ID of every node-alias entry (an entry
// parented to the server, spiffe://<td>/spire/server) whose selectors are all
// among the agent's node selectors, and, recursively, for the descendants of
// those entries. Node-alias entries themselves are not handed to agents.
package index

import (
	"slices"
	"sync"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Index is the in-memory authorized-entry index. It is safe for concurrent use.
// Entries handed out are shared and must be treated as read-only.
type Index struct {
	serverID string

	mu        sync.RWMutex
	entries   map[string]*datastore.Entry            // by entry ID
	byParent  map[string]map[string]*datastore.Entry // parent ID -> entry ID -> entry
	aliases   map[string]*datastore.Entry            // node-alias entries by entry ID
	nodeSels  map[string]map[datastore.Selector]bool // agent ID -> node selectors
	revision  int64                                  // last change-log sequence applied
	bundleRev int64                                  // last bundle change applied

	subs map[*Subscription]struct{}
}

// New returns an empty index for a trust domain whose server ID is serverID
// (spiffe://<td>/spire/server).
func New(serverID string) *Index {
	return &Index{
		serverID: serverID,
		entries:  make(map[string]*datastore.Entry),
		byParent: make(map[string]map[string]*datastore.Entry),
		aliases:  make(map[string]*datastore.Entry),
		nodeSels: make(map[string]map[datastore.Selector]bool),
		subs:     make(map[*Subscription]struct{}),
	}
}

// Revision returns the change-log sequence the index reflects.
func (x *Index) Revision() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.revision
}

// EntryCount returns the number of registration entries in the index (node
// aliases included), without copying them: the spire_server_entries gauge
// reads it on every scrape.
func (x *Index) EntryCount() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.entries)
}

// Load replaces the whole content (used at start): every entry, every agent's
// node selectors, and the change-log sequence they reflect.
func (x *Index) Load(entries []*datastore.Entry, nodeSelectors map[string][]datastore.Selector, revision int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.entries = make(map[string]*datastore.Entry, len(entries))
	x.byParent = make(map[string]map[string]*datastore.Entry)
	x.aliases = make(map[string]*datastore.Entry)
	for _, e := range entries {
		x.putLocked(e)
	}
	x.nodeSels = make(map[string]map[datastore.Selector]bool, len(nodeSelectors))
	for id, sels := range nodeSelectors {
		x.nodeSels[id] = selectorSet(sels)
	}
	x.revision = revision
	x.notifyAllLocked()
}

// Update applies one batch of changes read from the change log. For each
// changed entry, entry is the current row (nil when deleted); likewise for node
// selectors. revision is the highest sequence in the batch; bundleChanged says
// whether a bundle changed. Subscribers whose authorized set (or the bundle)
// changed are notified.
func (x *Index) Update(u Update) {
	x.mu.Lock()
	defer x.mu.Unlock()

	// Agents affected: compute each subscriber's view before and after.
	before := make(map[*Subscription]uint64, len(x.subs))
	for s := range x.subs {
		before[s] = x.fingerprintLocked(s.agentID)
	}
	for id, e := range u.Entries {
		x.removeLocked(id)
		if e != nil {
			x.putLocked(e)
		}
	}
	for agentID, sels := range u.NodeSelectors {
		if sels == nil {
			delete(x.nodeSels, agentID)
			continue
		}
		x.nodeSels[agentID] = selectorSet(sels)
	}
	if u.Revision > x.revision {
		x.revision = u.Revision
	}
	if u.BundleChanged {
		x.bundleRev = x.revision
	}
	for s := range x.subs {
		if u.BundleChanged || x.fingerprintLocked(s.agentID) != before[s] {
			s.notify(x.revision)
		}
	}
}

// Update is one batch of changes for Index.Update.
type Update struct {
	Entries       map[string]*datastore.Entry     // entry ID -> current entry, nil if deleted
	NodeSelectors map[string][]datastore.Selector // agent ID -> current selectors, nil if the node is gone
	BundleChanged bool
	Revision      int64
}

// AuthorizedEntries returns the entries agentID is authorized for, in a stable
// order (by entry ID).
func (x *Index) AuthorizedEntries(agentID string) []*datastore.Entry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := x.authorizedLocked(agentID)
	slices.SortFunc(out, func(a, b *datastore.Entry) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// IsAuthorized reports whether agentID is authorized for the entry entryID and
// returns the entry.
func (x *Index) IsAuthorized(agentID, entryID string) (*datastore.Entry, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.authorizedLocked(agentID) {
		if e.ID == entryID {
			return e, true
		}
	}
	return nil, false
}

// AliasIDs returns the SPIFFE IDs of the node aliases that agentID belongs to.
func (x *Index) AliasIDs(agentID string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.aliasIDsLocked(agentID)
}

func (x *Index) authorizedLocked(agentID string) []*datastore.Entry {
	seen := map[string]bool{}
	var out []*datastore.Entry
	var walk func(parent string)
	walk = func(parent string) {
		if seen[parent] {
			return
		}
		seen[parent] = true
		for _, e := range x.byParent[parent] {
			out = append(out, e)
			walk(e.SPIFFEID)
		}
	}
	walk(agentID)
	for _, alias := range x.aliasIDsLocked(agentID) {
		walk(alias)
	}
	// An entry reachable through two parents appears once.
	slices.SortFunc(out, func(a, b *datastore.Entry) int {
		if a.ID < b.ID {
			return -1
		} else if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return slices.CompactFunc(out, func(a, b *datastore.Entry) bool { return a.ID == b.ID })
}

func (x *Index) aliasIDsLocked(agentID string) []string {
	sels := x.nodeSels[agentID]
	var ids []string
	for _, a := range x.aliases {
		if len(a.Selectors) == 0 {
			continue
		}
		ok := true
		for _, s := range a.Selectors {
			if !sels[s] {
				ok = false
				break
			}
		}
		if ok {
			ids = append(ids, a.SPIFFEID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// fingerprintLocked hashes the agent's authorized set (IDs and revisions), so a
// change of any entry it may see changes the value.
func (x *Index) fingerprintLocked(agentID string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for _, e := range x.authorizedLocked(agentID) {
		for i := 0; i < len(e.ID); i++ {
			h = (h ^ uint64(e.ID[i])) * prime
		}
		h = (h ^ uint64(e.RevisionNumber)) * prime
		h = (h ^ 0xff) * prime
	}
	return h
}

func (x *Index) putLocked(e *datastore.Entry) {
	x.entries[e.ID] = e
	if e.ParentID == x.serverID {
		x.aliases[e.ID] = e
		return
	}
	m := x.byParent[e.ParentID]
	if m == nil {
		m = make(map[string]*datastore.Entry)
		x.byParent[e.ParentID] = m
	}
	m[e.ID] = e
}

func (x *Index) removeLocked(id string) {
	old, ok := x.entries[id]
	if !ok {
		return
	}
	delete(x.entries, id)
	delete(x.aliases, id)
	if m := x.byParent[old.ParentID]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(x.byParent, old.ParentID)
		}
	}
}

func (x *Index) notifyAllLocked() {
	for s := range x.subs {
		s.notify(x.revision)
	}
}

func selectorSet(sels []datastore.Selector) map[datastore.Selector]bool {
	m := make(map[datastore.Selector]bool, len(sels))
	for _, s := range sels {
		m[s] = true
	}
	return m
}
