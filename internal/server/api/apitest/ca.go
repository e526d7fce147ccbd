package apitest

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// NewCA returns an initialized server CA for td on store, with keys in
// memory. clock may be nil (time.Now).
func NewCA(tb testing.TB, td spiffeid.TrustDomain, store *datastore.Store, clock func() time.Time) *ca.CA {
	tb.Helper()
	c, err := ca.New(ca.Config{
		TrustDomain: td,
		KeyManager:  ca.NewMemoryKeyManager(),
		Store:       store,
		Clock:       clock,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Init(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return c
}
