package server

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/index"
)

// nodeStaleness bounds how long a cached attested-node record is trusted
// without a change notice; changes made on this server, and changes of
// other servers seen by the index feed, invalidate the cache at once.
const nodeStaleness = 10 * time.Second

// nodeStore is what the agent authorization reads and writes.
type nodeStore interface {
	FetchAttestedNode(ctx context.Context, spiffeID string) (*datastore.AttestedNode, error)
	UpdateAttestedNode(ctx context.Context, n *datastore.AttestedNode, mask *datastore.AttestedNodeMask) (*datastore.AttestedNode, error)
}

// nodeCache caches attested-node records for agent authorization, so that
// an agent's steady-state calls do not read the datastore. Safe for
// concurrent use.
type nodeCache struct {
	store nodeStore
	now   func() time.Time

	mu    sync.Mutex
	nodes map[string]cachedNode
}

type cachedNode struct {
	node *datastore.AttestedNode // nil: not attested
	at   time.Time
}

func newNodeCache(store nodeStore, now func() time.Time) *nodeCache {
	return &nodeCache{store: store, now: now, nodes: make(map[string]cachedNode)}
}

// invalidate forgets the record of id.
func (c *nodeCache) invalidate(id string) {
	c.mu.Lock()
	delete(c.nodes, id)
	c.mu.Unlock()
}

func (c *nodeCache) fetch(ctx context.Context, id string) (*datastore.AttestedNode, error) {
	n, err := c.store.FetchAttestedNode(ctx, id)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		n = nil
	case err != nil:
		return nil, err
	}
	c.mu.Lock()
	c.nodes[id] = cachedNode{node: n, at: c.now()}
	c.mu.Unlock()
	return n, nil
}

// authorize is authz.Facts.Agent: it checks svid against the cached record,
// reading the datastore when the record is missing, stale, or does not
// accept the SVID (it may have been renewed or promoted since), and makes a
// renewed SVID current when the agent first uses it.
func (c *nodeCache) authorize(ctx context.Context, id spiffeid.ID, svid *x509.Certificate) error {
	c.mu.Lock()
	cached, ok := c.nodes[id.String()]
	c.mu.Unlock()
	if ok && c.now().Sub(cached.at) < nodeStaleness {
		if promote, err := authz.CheckAgent(c.now(), cached.node, svid); err == nil && !promote {
			return nil
		}
	}
	node, err := c.fetch(ctx, id.String())
	if err != nil {
		return err
	}
	promote, err := authz.CheckAgent(c.now(), node, svid)
	if err != nil || !promote {
		return err
	}
	// The agent uses the SVID of its last renewal: make it current.
	_, err = c.store.UpdateAttestedNode(ctx, &datastore.AttestedNode{
		SPIFFEID:         node.SPIFFEID,
		CertSerialNumber: node.NewCertSerialNumber,
		CertNotAfter:     node.NewCertNotAfter,
	}, &datastore.AttestedNodeMask{CertSerialNumber: true, CertNotAfter: true, NewCertSerialNumber: true, NewCertNotAfter: true})
	c.invalidate(id.String())
	return err
}

// feedSource is the index feed's view of the datastore; every node change
// the feed applies (from this server or another one) goes through
// FetchAttestedNode, which invalidates the cached record first.
type feedSource struct {
	index.Source
	cache *nodeCache
}

func (f feedSource) FetchAttestedNode(ctx context.Context, spiffeID string) (*datastore.AttestedNode, error) {
	f.cache.invalidate(spiffeID)
	return f.Source.FetchAttestedNode(ctx, spiffeID)
}
