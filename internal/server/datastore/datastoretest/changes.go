package datastoretest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

type changeStep struct {
	name string
	do   func(t *testing.T, s *datastore.Store)
	want []datastore.Change // Seq and At ignored
}

func ch(kind datastore.ChangeKind, id, op string) datastore.Change {
	return datastore.Change{Kind: kind, ID: id, Op: op}
}

// changeSteps are mutations and the change rows each must append.
func changeSteps() []changeStep {
	must := func(t *testing.T, err error) {
		t.Helper()
		requireNoError(t, err)
	}
	return []changeStep{
		{"create bundle", func(t *testing.T, s *datastore.Store) {
			_, err := s.CreateBundle(t.Context(), &datastore.Bundle{TrustDomain: "spiffe://fed.org"})
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeBundle, "spiffe://fed.org", datastore.OpCreate)}},
		{"create entry", func(t *testing.T, s *datastore.Store) {
			_, err := s.CreateEntry(t.Context(), &datastore.Entry{ID: "e1", SPIFFEID: td + "/w", ParentID: td + "/n",
				Selectors: sels("a:1"), FederatesWith: []string{"spiffe://fed.org"}})
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeEntry, "e1", datastore.OpCreate)}},
		{"batch create", func(t *testing.T, s *datastore.Store) {
			_, _, err := s.CreateEntries(t.Context(), []*datastore.Entry{
				{ID: "e2", SPIFFEID: td + "/w2", ParentID: td + "/n", Selectors: sels("a:2")},
				{ID: "e1", SPIFFEID: td + "/w", ParentID: td + "/n", Selectors: sels("a:9")},
				{ID: "e3", SPIFFEID: td + "/w3", ParentID: td + "/n", Selectors: sels("a:3"), ExpiresAt: 10},
			})
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeEntry, "e2", datastore.OpCreate), ch(datastore.ChangeEntry, "e3", datastore.OpCreate)}},
		{"update entry", func(t *testing.T, s *datastore.Store) {
			_, err := s.UpdateEntry(t.Context(), &datastore.Entry{ID: "e1", Hint: "x"}, &datastore.EntryMask{Hint: true})
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeEntry, "e1", datastore.OpUpdate)}},
		{"refused update", func(t *testing.T, s *datastore.Store) {
			_, err := s.UpdateEntry(t.Context(), &datastore.Entry{ID: "nosuch"}, nil)
			requireError(t, err, datastore.ErrNotFound, "not found")
		}, nil},
		{"append bundle", func(t *testing.T, s *datastore.Store) {
			_, err := s.AppendBundle(t.Context(), &datastore.Bundle{TrustDomain: "spiffe://fed.org", X509Authorities: x509s("r")})
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeBundle, "spiffe://fed.org", datastore.OpUpdate)}},
		{"append nothing new", func(t *testing.T, s *datastore.Store) {
			_, err := s.AppendBundle(t.Context(), &datastore.Bundle{TrustDomain: "spiffe://fed.org", X509Authorities: x509s("r")})
			must(t, err)
		}, nil},
		{"dissociating bundle delete", func(t *testing.T, s *datastore.Store) {
			must(t, s.DeleteBundle(t.Context(), "spiffe://fed.org", datastore.BundleDeleteDissociate))
		}, []datastore.Change{ch(datastore.ChangeEntry, "e1", datastore.OpUpdate), ch(datastore.ChangeBundle, "spiffe://fed.org", datastore.OpDelete)}},
		{"prune entries", func(t *testing.T, s *datastore.Store) {
			must(t, s.PruneEntries(t.Context(), 11))
		}, []datastore.Change{ch(datastore.ChangeEntry, "e3", datastore.OpDelete)}},
		{"create node", func(t *testing.T, s *datastore.Store) {
			_, err := s.CreateAttestedNode(t.Context(), &datastore.AttestedNode{SPIFFEID: td + "/agent", AttestationType: "join_token", CertSerialNumber: "1"})
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeNode, td+"/agent", datastore.OpCreate)}},
		{"refused node create", func(t *testing.T, s *datastore.Store) {
			_, err := s.CreateAttestedNode(t.Context(), &datastore.AttestedNode{SPIFFEID: td + "/agent"})
			requireError(t, err, datastore.ErrAlreadyExists, "already exists")
		}, nil},
		{"set node selectors", func(t *testing.T, s *datastore.Store) {
			must(t, s.SetNodeSelectors(t.Context(), td+"/agent", sels("a:1")))
		}, []datastore.Change{ch(datastore.ChangeNode, td+"/agent", datastore.OpUpdate)}},
		{"update node", func(t *testing.T, s *datastore.Store) {
			_, err := s.UpdateAttestedNode(t.Context(), &datastore.AttestedNode{SPIFFEID: td + "/agent"}, &datastore.AttestedNodeMask{CertSerialNumber: true})
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeNode, td+"/agent", datastore.OpUpdate)}},
		{"delete node", func(t *testing.T, s *datastore.Store) {
			_, err := s.DeleteAttestedNode(t.Context(), td+"/agent")
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeNode, td+"/agent", datastore.OpDelete)}},
		{"join tokens are not changes", func(t *testing.T, s *datastore.Store) {
			must(t, s.CreateJoinToken(t.Context(), &datastore.JoinToken{Token: "t", ExpiresAt: 1}))
			_, err := s.ConsumeJoinToken(t.Context(), "t")
			must(t, err)
		}, nil},
		{"delete entry", func(t *testing.T, s *datastore.Store) {
			_, err := s.DeleteEntry(t.Context(), "e2")
			must(t, err)
		}, []datastore.Change{ch(datastore.ChangeEntry, "e2", datastore.OpDelete)}},
	}
}

func testChanges(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	seq, err := s.LatestChangeSeq(ctx)
	requireNoError(t, err)
	requireEqual(t, seq, int64(0), "latest sequence of an empty log")

	var all []datastore.Change
	for _, step := range changeSteps() {
		t.Run("ok/"+step.name, func(t *testing.T) {
			before, err := s.LatestChangeSeq(ctx)
			requireNoError(t, err)
			step.do(t, s)
			got, err := s.ListChanges(ctx, before, 0)
			requireNoError(t, err)
			var kinds []datastore.Change
			for _, c := range got {
				if c.Seq <= before {
					t.Fatalf("change %+v not after %d", c, before)
				}
				if c.At == 0 {
					t.Fatalf("change %+v has no time", c)
				}
				kinds = append(kinds, ch(c.Kind, c.ID, c.Op))
			}
			requireEqual(t, kinds, step.want, "changes")
			all = append(all, got...)
			latest, err := s.LatestChangeSeq(ctx)
			requireNoError(t, err)
			if len(got) > 0 {
				requireEqual(t, latest, got[len(got)-1].Seq, "latest sequence")
			} else {
				requireEqual(t, latest, before, "latest sequence")
			}
		})
	}
	t.Run("ok/strictly increasing", func(t *testing.T) {
		for i := 1; i < len(all); i++ {
			if all[i].Seq <= all[i-1].Seq {
				t.Fatalf("sequence not strictly increasing: %d then %d", all[i-1].Seq, all[i].Seq)
			}
		}
		got, err := s.ListChanges(ctx, 0, 0)
		requireNoError(t, err)
		requireEqual(t, got, all, "whole log")
	})
	t.Run("ok/limit", func(t *testing.T) {
		got, err := s.ListChanges(ctx, all[0].Seq, 2)
		requireNoError(t, err)
		requireEqual(t, got, all[1:3], "limited changes")
		got, err = s.ListChanges(ctx, all[len(all)-1].Seq, 10)
		requireNoError(t, err)
		requireEqual(t, len(got), 0, "changes after the last")
	})
	t.Run("ok/prune keeps the latest", func(t *testing.T) {
		latest := all[len(all)-1]
		requireNoError(t, s.PruneChanges(ctx, latest.At+1000))
		got, err := s.ListChanges(ctx, 0, 0)
		requireNoError(t, err)
		requireEqual(t, got, []datastore.Change{latest}, "changes left")
		seq, err := s.LatestChangeSeq(ctx)
		requireNoError(t, err)
		requireEqual(t, seq, latest.Seq, "latest sequence")
	})
}

// testChangesUnderConcurrency: while writers run concurrently, a reader that
// polls ListChanges after the last sequence it saw misses nothing (sequence
// order is commit order).
func testChangesUnderConcurrency(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	const writers, perWriter = 8, 25
	var seen []datastore.Change
	poll := func() {
		after := int64(0)
		if len(seen) > 0 {
			after = seen[len(seen)-1].Seq
		}
		got, err := s.ListChanges(ctx, after, 0)
		requireNoError(t, err)
		seen = append(seen, got...)
	}
	done := make(chan struct{})
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				e, err := s.CreateEntry(ctx, entry(fmt.Sprintf("/w%d/%d", w, i), "/node", fmt.Sprintf("w:%d-%d", w, i)))
				if err == nil && i%2 == 0 {
					e.Hint = "x"
					_, err = s.UpdateEntry(ctx, e, &datastore.EntryMask{Hint: true})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			poll()
		}
	}
	close(errs)
	for err := range errs {
		requireNoError(t, err)
	}
	poll()
	all, err := s.ListChanges(ctx, 0, 0)
	requireNoError(t, err)
	requireEqual(t, len(all), writers*(perWriter+(perWriter+1)/2), "changes")
	requireEqual(t, seen, all, "changes seen by the poller")
}
