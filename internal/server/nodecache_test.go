package server

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

type countingStore struct {
	*datastore.Store
	fetches atomic.Int32
}

func (c *countingStore) FetchAttestedNode(ctx context.Context, id string) (*datastore.AttestedNode, error) {
	c.fetches.Add(1)
	return c.Store.FetchAttestedNode(ctx, id)
}

func agentCert(id string, serial int64, now time.Time) *x509.Certificate {
	u, _ := url.Parse(id)
	return &x509.Certificate{URIs: []*url.URL{u}, SerialNumber: big.NewInt(serial), NotAfter: now.Add(time.Hour)}
}

// Steady-state agent calls are served from the cache; a ban on this server
// or one seen by the feed (another server) is refused at once (T3).
func TestNodeCache(t *testing.T) {
	ctx := context.Background()
	const id = "spiffe://example.org/spire/agent/join_token/a"
	store := &countingStore{Store: datastoretest.OpenSQLite(t)}
	if _, err := store.CreateAttestedNode(ctx, &datastore.AttestedNode{SPIFFEID: id, CertSerialNumber: "1"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := newNodeCache(store, func() time.Time { return now })
	agentID := spiffeid.RequireFromString(id)
	cert := agentCert(id, 1, now)
	for range 5 {
		if err := c.authorize(ctx, agentID, cert); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.fetches.Load(); n != 1 {
		t.Fatalf("%d datastore reads for 5 calls", n)
	}

	// Renewal then first use of the new SVID: promoted, and the old one refused.
	if _, err := store.UpdateAttestedNode(ctx, &datastore.AttestedNode{SPIFFEID: id, NewCertSerialNumber: "2"}, &datastore.AttestedNodeMask{NewCertSerialNumber: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.authorize(ctx, agentID, agentCert(id, 2, now)); err != nil {
		t.Fatalf("renewed SVID: %v", err)
	}
	if err := c.authorize(ctx, agentID, cert); !errors.Is(err, authz.ErrDenied) {
		t.Fatalf("old SVID after promotion: %v", err)
	}

	// A ban made elsewhere, noticed by the feed.
	if _, err := store.UpdateAttestedNode(ctx, &datastore.AttestedNode{SPIFFEID: id}, &datastore.AttestedNodeMask{CertSerialNumber: true, NewCertSerialNumber: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := (feedSource{Source: store.Store, cache: c}).FetchAttestedNode(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.authorize(ctx, agentID, agentCert(id, 2, now)); !errors.Is(err, authz.ErrDenied) {
		t.Fatalf("banned agent: %v", err)
	}

	// Without any notice, the cache is trusted for nodeStaleness only.
	if _, err := store.DeleteAttestedNode(ctx, id); err != nil {
		t.Fatal(err)
	}
	now = now.Add(nodeStaleness)
	if err := c.authorize(ctx, agentID, agentCert(id, 2, now)); !errors.Is(err, authz.ErrDenied) {
		t.Fatalf("evicted agent after staleness: %v", err)
	}
}
