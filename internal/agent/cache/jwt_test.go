package cache_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/agent/cache/cachetest"
)

type testClock struct{ now atomic.Pointer[time.Time] }

func newTestClock() *testClock {
	c := &testClock{}
	c.set(time.Now())
	return c
}

func (c *testClock) set(t time.Time)                 { c.now.Store(&t) }
func (c *testClock) Now() time.Time                  { return *c.now.Load() }
func (c *testClock) add(d time.Duration)             { c.set(c.Now().Add(d)) }
func (c *testClock) fn() func() time.Time            { return c.Now }
func (c *testClock) after(d time.Duration) time.Time { return c.Now().Add(d) }

func TestFetchJWTSVIDCachesAndRefreshes(t *testing.T) {
	ctx := context.Background()
	ca := cachetest.NewCA(t, td)
	signer := &cachetest.JWTSigner{CA: ca, TTL: 10 * time.Minute}
	clk := newTestClock()
	c := newCache(t, cache.Config{JWTSigner: signer, Clock: clk.fn()})
	e := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	c.SetEntries([]*cache.Entry{e})

	first, err := c.FetchJWTSVID(ctx, e, []string{"x", "y"})
	if err != nil {
		t.Fatal(err)
	}
	// Same ID and audience set in another order: served from the cache.
	again, err := c.FetchJWTSVID(ctx, e, []string{"y", "x"})
	if err != nil || again != first || signer.Calls() != 1 {
		t.Fatalf("second fetch: svid same=%v err=%v calls=%d; want cached", again == first, err, signer.Calls())
	}
	// Another audience: signed.
	if _, err := c.FetchJWTSVID(ctx, e, []string{"z"}); err != nil || signer.Calls() != 2 {
		t.Fatalf("other audience: err=%v calls=%d", err, signer.Calls())
	}
	// Past half-life: refreshed on fetch.
	clk.add(6 * time.Minute)
	if _, err := c.FetchJWTSVID(ctx, e, []string{"x", "y"}); err != nil || signer.Calls() != 3 {
		t.Fatalf("past half-life: err=%v calls=%d; want a new token", err, signer.Calls())
	}
}

func TestFetchJWTSVIDServesCacheThroughOutage(t *testing.T) {
	ctx := context.Background()
	ca := cachetest.NewCA(t, td)
	signer := &cachetest.JWTSigner{CA: ca, TTL: 10 * time.Minute}
	clk := newTestClock()
	c := newCache(t, cache.Config{JWTSigner: signer, Clock: clk.fn()})
	e := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	c.SetEntries([]*cache.Entry{e})
	first, err := c.FetchJWTSVID(ctx, e, []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	outage := errors.New("server unavailable")
	signer.SetError(outage)
	clk.add(8 * time.Minute)
	got, err := c.FetchJWTSVID(ctx, e, []string{"x"})
	if err != nil || got != first {
		t.Fatalf("during outage before expiry: err=%v; want the cached token", err)
	}
	clk.add(3 * time.Minute) // expired now
	if _, err := c.FetchJWTSVID(ctx, e, []string{"x"}); !errors.Is(err, outage) {
		t.Fatalf("after expiry: err=%v, want %v", err, outage)
	}
	// Without a token at all, the error is returned.
	if _, err := c.FetchJWTSVID(ctx, e, []string{"other"}); !errors.Is(err, outage) {
		t.Fatalf("no cached token: err=%v, want %v", err, outage)
	}
}

func TestFetchJWTSVIDNoSigner(t *testing.T) {
	c := newCache(t, cache.Config{})
	e := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	if _, err := c.FetchJWTSVID(context.Background(), e, []string{"x"}); !errors.Is(err, cache.ErrNoJWTSigner) {
		t.Fatalf("err = %v, want ErrNoJWTSigner", err)
	}
}

func TestRefreshJWTSVIDsAheadOfExpiry(t *testing.T) {
	ctx := context.Background()
	ca := cachetest.NewCA(t, td)
	signer := &cachetest.JWTSigner{CA: ca, TTL: 10 * time.Minute}
	clk := newTestClock()
	c := newCache(t, cache.Config{JWTSigner: signer, Clock: clk.fn()})
	a := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	b := cachetest.Entry("b", "spiffe://neural-hive.local/b", "unix:uid:1")
	c.SetEntries([]*cache.Entry{a, b})
	for _, e := range []*cache.Entry{a, b} {
		if _, err := c.FetchJWTSVID(ctx, e, []string{"x"}); err != nil {
			t.Fatal(err)
		}
	}
	next, ok := c.NextJWTRefresh()
	if !ok || next.Sub(time.Now().Add(5*time.Minute)).Abs() > 2*time.Second {
		t.Fatalf("NextJWTRefresh = %v, %v; want about now+5m", next, ok)
	}
	if err := c.RefreshJWTSVIDs(ctx, clk.after(time.Minute)); err != nil || signer.Calls() != 2 {
		t.Fatalf("refresh before half-life: err=%v calls=%d; want nothing signed", err, signer.Calls())
	}
	// Entry b removed: its token is dropped, not refreshed.
	c.SetEntries([]*cache.Entry{a})
	if n := c.JWTSVIDCount(); n != 1 {
		t.Fatalf("JWTSVIDCount after removing b = %d, want 1", n)
	}
	if err := c.RefreshJWTSVIDs(ctx, clk.after(6*time.Minute)); err != nil || signer.Calls() != 3 {
		t.Fatalf("refresh after half-life: err=%v calls=%d; want one token signed", err, signer.Calls())
	}
	signer.SetError(errors.New("boom"))
	if err := c.RefreshJWTSVIDs(ctx, time.Now().Add(time.Hour)); err == nil {
		t.Fatal("refresh with failing signer: want error")
	}
}

func TestJWTCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	ca := cachetest.NewCA(t, td)
	signer := &cachetest.JWTSigner{CA: ca}
	c := newCache(t, cache.Config{JWTSigner: signer, MaxJWTSVIDs: 3})
	e := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	c.SetEntries([]*cache.Entry{e})
	for _, aud := range []string{"1", "2", "3", "4", "5"} {
		if _, err := c.FetchJWTSVID(ctx, e, []string{aud}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.JWTSVIDCount(); n != 3 {
		t.Fatalf("JWTSVIDCount = %d, want 3", n)
	}
	// "1" was evicted (least recently used); "5" is still cached.
	calls := signer.Calls()
	if _, _ = c.FetchJWTSVID(ctx, e, []string{"5"}); signer.Calls() != calls {
		t.Fatal("most recent token evicted")
	}
	if _, _ = c.FetchJWTSVID(ctx, e, []string{"1"}); signer.Calls() != calls+1 {
		t.Fatal("least recently used token not evicted")
	}
}

func TestFetchJWTSVIDSingleFlight(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	gate := make(chan struct{})
	signer := &blockingSigner{inner: &cachetest.JWTSigner{CA: ca}, gate: gate}
	c := newCache(t, cache.Config{JWTSigner: signer})
	e := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.FetchJWTSVID(context.Background(), e, []string{"x"}); err != nil {
				t.Error(err)
			}
		})
	}
	// Let the first call through only once all callers are likely waiting;
	// correctness does not depend on it: at most 8 calls, usually 1.
	close(gate)
	wg.Wait()
	if n := signer.inner.Calls(); n < 1 || n > 8 {
		t.Fatalf("calls = %d", n)
	}
	if _, err := c.FetchJWTSVID(context.Background(), e, []string{"x"}); err != nil {
		t.Fatal(err)
	}
}

type blockingSigner struct {
	inner *cachetest.JWTSigner
	gate  chan struct{}
}

func (s *blockingSigner) NewJWTSVID(ctx context.Context, e *cache.Entry, aud []string) (*cache.JWTSVID, error) {
	<-s.gate
	return s.inner.NewJWTSVID(ctx, e, aud)
}

func TestShouldRefreshJWT(t *testing.T) {
	iat := time.Unix(1000, 0)
	svid := &cache.JWTSVID{IssuedAt: iat, ExpiresAt: iat.Add(10 * time.Minute)}
	for _, tt := range []struct {
		name string
		now  time.Time
		want bool
	}{
		{"ok/fresh", iat.Add(time.Minute), false},
		{"fail/half", iat.Add(5 * time.Minute), true},
		{"fail/expired", iat.Add(11 * time.Minute), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := cache.ShouldRefreshJWT(tt.now, svid); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
