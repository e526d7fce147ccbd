package nodeattest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

func TestJoinToken(t *testing.T) {
	for _, backend := range []struct {
		name string
		open func(testing.TB) *datastore.Store
	}{
		{"sqlite", datastoretest.OpenSQLite},
		{"postgres", datastoretest.OpenPostgres},
	} {
		t.Run(backend.name, func(t *testing.T) {
			ctx := context.Background()
			store := backend.open(t)
			now := time.Now()
			jt := &JoinToken{TD: td, Store: store, Clock: func() time.Time { return now }}
			mustToken := func(tok string, ttl time.Duration) {
				t.Helper()
				if err := store.CreateJoinToken(ctx, &datastore.JoinToken{Token: tok, ExpiresAt: now.Add(ttl).Unix()}); err != nil {
					t.Fatal(err)
				}
			}

			t.Run("ok/agent ID from token", func(t *testing.T) {
				mustToken("5f1e9a3c-0000-4000-8000-000000000001", time.Hour)
				res, err := jt.Attest(ctx, []byte("5f1e9a3c-0000-4000-8000-000000000001"), nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := res.AgentID.String(); got != "spiffe://neural-hive.local/spire/agent/join_token/5f1e9a3c-0000-4000-8000-000000000001" {
					t.Fatalf("agent ID %s", got)
				}
				if res.CanReattest {
					t.Fatal("join_token agents cannot re-attest")
				}
			})
			t.Run("fail/T4 sequential reuse", func(t *testing.T) {
				_, err := jt.Attest(ctx, []byte("5f1e9a3c-0000-4000-8000-000000000001"), nil)
				if r, ok := IsRefusal(err); !ok || r.Msg != "failed to attest: join token does not exist or has already been used" {
					t.Fatalf("reuse: %v", err)
				}
			})
			t.Run("fail/T4 expired token", func(t *testing.T) {
				mustToken("expired-token", -time.Second)
				_, err := jt.Attest(ctx, []byte("expired-token"), nil)
				if r, ok := IsRefusal(err); !ok || r.Msg != "join token expired" {
					t.Fatalf("expired: %v", err)
				}
				// An expired token is consumed too: it cannot be tried again.
				if _, err := store.FetchJoinToken(ctx, "expired-token"); err == nil {
					t.Fatal("expired token still stored")
				}
			})
			t.Run("fail/T4 unknown token", func(t *testing.T) {
				if _, err := jt.Attest(ctx, []byte("never-issued"), nil); err == nil {
					t.Fatal("unknown token accepted")
				}
			})
			t.Run("fail/T5 token cannot shape the ID path", func(t *testing.T) {
				for _, tok := range []string{"../../spire/server", "a/b", "%2e%2e", "", "UPPER/x"} {
					if _, err := jt.Attest(ctx, []byte(tok), nil); err == nil {
						t.Fatalf("token %q accepted", tok)
					}
				}
			})
			t.Run("ok/T4 50 concurrent attestations with one token yield exactly one agent", func(t *testing.T) {
				mustToken("concurrent-token", time.Hour)
				var wins, losses atomic.Int32
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range 50 {
					wg.Go(func() {
						<-start
						_, err := jt.Attest(ctx, []byte("concurrent-token"), nil)
						if err == nil {
							wins.Add(1)
						} else if _, ok := IsRefusal(err); ok {
							losses.Add(1)
						} else {
							t.Errorf("unexpected error: %v", err)
						}
					})
				}
				close(start)
				wg.Wait()
				if wins.Load() != 1 || losses.Load() != 49 {
					t.Fatalf("wins %d losses %d, want 1 and 49", wins.Load(), losses.Load())
				}
			})
		})
	}
}
