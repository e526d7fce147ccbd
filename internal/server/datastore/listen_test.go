package datastore_test

import (
	"context"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

// TestListen_PostgresNotifiesOtherServers: a write through one store reaches a
// listener on another store sharing the database (HA servers), without polling.
func TestListen_PostgresNotifiesOtherServers(t *testing.T) {
	cfg := datastoretest.PostgresConfig(t)
	writer := datastoretest.Open(t, cfg)
	reader := datastoretest.Open(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() { done <- reader.Listen(ctx, func() { got <- struct{}{} }) }()

	// The LISTEN is in place once a write is seen; retry the write until then.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		if _, err := writer.CreateEntry(ctx, &datastore.Entry{
			SPIFFEID:  "spiffe://neural-hive.local/listen/" + string(rune('a'+i%26)) + time.Now().Format("150405.000000"),
			ParentID:  "spiffe://neural-hive.local/spire/agent/x",
			Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1"}},
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Listen returned %v on cancel", err)
			}
			return
		case <-deadline:
			t.Fatal("no notification within 10s")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestListen_SQLiteWaitsForCancel(t *testing.T) {
	s := datastoretest.OpenSQLite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Listen(ctx, func() { t.Error("SQLite has no other writers to hear") }); err != nil {
		t.Fatal(err)
	}
}
