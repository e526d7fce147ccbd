package server

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestRunPeriodically(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		done := make(chan error)
		go func() {
			done <- runPeriodically(ctx, JoinTokenPruneInterval, func(context.Context) { calls++ })
		}()
		time.Sleep(JoinTokenPruneInterval*3 + time.Second)
		synctest.Wait()
		if calls != 3 {
			t.Fatalf("%d calls after 3 intervals", calls)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("returned %v on cancel", err)
		}
	})
}
