package datastore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

// TestPostgresNotify: every writing transaction that appends changes sends
// NOTIFY hive_changes with its last sequence number, once, at commit.
func TestPostgresNotify(t *testing.T) {
	cfg := datastoretest.PostgresConfig(t)
	s := datastoretest.Open(t, cfg)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, cfg.ConnectionString)
	requireNoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "LISTEN "+datastore.NotifyChannel)
	requireNoError(t, err)

	wait := func(t *testing.T) string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		requireNoError(t, err)
		return n.Payload
	}

	_, err = s.CreateBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://fed.org"})
	requireNoError(t, err)
	got := wait(t)
	seq, err := s.LatestChangeSeq(ctx)
	requireNoError(t, err)
	if got != strconv.FormatInt(seq, 10) {
		t.Fatalf("payload %q, want %d", got, seq)
	}

	// One notification per transaction, with its last sequence.
	_, _, err = s.CreateEntries(ctx, []*datastore.Entry{
		{SPIFFEID: "spiffe://td/a", ParentID: "spiffe://td/n", Selectors: []datastore.Selector{{Type: "a", Value: "1"}}},
		{SPIFFEID: "spiffe://td/b", ParentID: "spiffe://td/n", Selectors: []datastore.Selector{{Type: "a", Value: "2"}}},
	})
	requireNoError(t, err)
	got = wait(t)
	seq, err = s.LatestChangeSeq(ctx)
	requireNoError(t, err)
	if got != strconv.FormatInt(seq, 10) {
		t.Fatalf("payload %q, want %d", got, seq)
	}

	// Writes without changes (join tokens) and refused writes notify nothing.
	requireNoError(t, s.CreateJoinToken(ctx, &datastore.JoinToken{Token: "t"}))
	_, err = s.CreateBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://fed.org"})
	if err == nil {
		t.Fatal("duplicate bundle accepted")
	}
	requireNoError(t, s.SetNodeSelectors(ctx, "spiffe://td/agent", nil))
	got = wait(t)
	if got != strconv.FormatInt(seq+1, 10) {
		t.Fatalf("payload %q after a silent write and a refusal, want %d", got, seq+1)
	}
}
