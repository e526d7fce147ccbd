package endpoints

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// T14: attestation floods are throttled to 1/s per IP; other IPs are not.
func TestLimiter_T14(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(AttestLimitPerIP)
		ctx := context.Background()
		start := time.Now()
		for range 3 {
			if err := l.wait(ctx, "10.0.0.1", 1); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Fatalf("3 attestations took %v, want 2s", d)
		}
		other := time.Now()
		if err := l.wait(ctx, "10.0.0.2", 1); err != nil || time.Since(other) != 0 {
			t.Fatalf("another IP waited: %v", err)
		}

		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- l.wait(cctx, "10.0.0.1", 1) }()
		synctest.Wait()
		cancel()
		if err := <-done; status.Code(err) != codes.Canceled {
			t.Fatalf("canceled wait: %v", err)
		}
	})
	l := newLimiter(SignLimitPerIP)
	err := l.wait(context.Background(), "10.0.0.1", 501)
	if status.Code(err) != codes.ResourceExhausted || status.Convert(err).Message() != "rate (501) exceeds burst size (500)" {
		t.Fatalf("oversized batch: %v", err)
	}
}
