package datastoretest

import (
	"errors"
	"sync"
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

func testJoinTokens(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	t.Run("ok/create, fetch, consume", func(t *testing.T) {
		requireNoError(t, s.CreateJoinToken(ctx, &datastore.JoinToken{Token: "tok-1", ExpiresAt: 100}))
		got, err := s.FetchJoinToken(ctx, "tok-1")
		requireNoError(t, err)
		requireEqual(t, got, &datastore.JoinToken{Token: "tok-1", ExpiresAt: 100}, "fetched token")
		got, err = s.ConsumeJoinToken(ctx, "tok-1")
		requireNoError(t, err)
		requireEqual(t, got, &datastore.JoinToken{Token: "tok-1", ExpiresAt: 100}, "consumed token")
		_, err = s.ConsumeJoinToken(ctx, "tok-1")
		requireError(t, err, datastore.ErrNotFound, "join token not found")
		_, err = s.FetchJoinToken(ctx, "tok-1")
		requireError(t, err, datastore.ErrNotFound, "join token not found")
	})
	t.Run("fail/create existing", func(t *testing.T) {
		requireNoError(t, s.CreateJoinToken(ctx, &datastore.JoinToken{Token: "tok-2", ExpiresAt: 100}))
		err := s.CreateJoinToken(ctx, &datastore.JoinToken{Token: "tok-2", ExpiresAt: 999})
		requireError(t, err, datastore.ErrAlreadyExists, "join token already exists")
		got, err := s.FetchJoinToken(ctx, "tok-2")
		requireNoError(t, err)
		requireEqual(t, got.ExpiresAt, int64(100), "expiry of the existing token")
	})
	t.Run("fail/create empty", func(t *testing.T) {
		requireError(t, s.CreateJoinToken(ctx, &datastore.JoinToken{}), datastore.ErrInvalidArgument, "join token is empty")
		requireError(t, s.CreateJoinToken(ctx, nil), datastore.ErrInvalidArgument, "join token is empty")
	})
	t.Run("ok/delete", func(t *testing.T) {
		requireNoError(t, s.DeleteJoinToken(ctx, "tok-2"))
		_, err := s.FetchJoinToken(ctx, "tok-2")
		requireError(t, err, datastore.ErrNotFound, "not found")
	})
	t.Run("fail/delete unknown", func(t *testing.T) {
		requireError(t, s.DeleteJoinToken(ctx, "nosuch"), datastore.ErrNotFound, "join token not found")
	})
	t.Run("ok/prune expired", func(t *testing.T) {
		for tok, exp := range map[string]int64{"old": 10, "edge": 20, "new": 30} {
			requireNoError(t, s.CreateJoinToken(ctx, &datastore.JoinToken{Token: tok, ExpiresAt: exp}))
		}
		requireNoError(t, s.PruneJoinTokens(ctx, 20))
		_, err := s.FetchJoinToken(ctx, "old")
		requireError(t, err, datastore.ErrNotFound, "not found")
		for _, tok := range []string{"edge", "new"} {
			_, err := s.FetchJoinToken(ctx, tok)
			requireNoError(t, err)
		}
	})
	t.Run("ok/tokens are not in the change log", func(t *testing.T) {
		seq, err := s.LatestChangeSeq(ctx)
		requireNoError(t, err)
		requireEqual(t, seq, int64(0), "latest change")
	})
}

// testConsumeJoinTokenConcurrently: of 50 goroutines consuming one token,
// exactly one wins and the others get ErrNotFound.
func testConsumeJoinTokenConcurrently(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	const callers = 50
	for round := range 3 {
		requireNoError(t, s.CreateJoinToken(ctx, &datastore.JoinToken{Token: "contended", ExpiresAt: int64(round)}))
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wins, losses int
		var others []error
		start := make(chan struct{})
		for range callers {
			wg.Go(func() {
				<-start
				got, err := s.ConsumeJoinToken(ctx, "contended")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && got.ExpiresAt == int64(round):
					wins++
				case errors.Is(err, datastore.ErrNotFound):
					losses++
				default:
					others = append(others, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(others) > 0 {
			t.Fatalf("round %d: unexpected outcomes: %v", round, others)
		}
		requireEqual(t, [2]int{wins, losses}, [2]int{1, callers - 1}, "winners and losers")
	}
}
