package sync

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRetryBackoff(t *testing.T) {
	b := newRetryBackoff(time.Second, 30*time.Second, newJitter(rand.New(rand.NewPCG(1, 2))))
	// Attempt n waits in [d/2, d] with d = min(30s, 1s*2^n).
	for n, d := range []time.Duration{1, 2, 4, 8, 16, 30, 30, 30} {
		d *= time.Second
		got := b.next()
		if got < d/2 || got > d {
			t.Fatalf("attempt %d: delay %v, want in [%v, %v]", n, got, d/2, d)
		}
	}
	b.reset()
	if got := b.next(); got < 500*time.Millisecond || got > time.Second {
		t.Fatalf("after reset: delay %v, want in [0.5s, 1s]", got)
	}
	// The same seed gives the same delays (the jitter is injected).
	b1 := newRetryBackoff(time.Second, time.Minute, newJitter(rand.New(rand.NewPCG(7, 7))))
	b2 := newRetryBackoff(time.Second, time.Minute, newJitter(rand.New(rand.NewPCG(7, 7))))
	for range 5 {
		if x, y := b1.next(), b2.next(); x != y {
			t.Fatalf("same seed, different delays: %v vs %v", x, y)
		}
	}
}

func TestRenewAt(t *testing.T) {
	nb := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name     string
		lifetime time.Duration
		want     time.Duration
	}{
		{name: "ok/one hour", lifetime: time.Hour, want: 30 * time.Minute},
		{name: "ok/odd seconds", lifetime: 61 * time.Second, want: 30500 * time.Millisecond},
		{name: "ok/zero", lifetime: 0, want: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := RenewAt(nb, nb.Add(tt.lifetime)); !got.Equal(nb.Add(tt.want)) {
				t.Fatalf("RenewAt = %v, want %v", got, nb.Add(tt.want))
			}
		})
	}
}

func TestNextRenewal(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name         string
		nb, na, want time.Duration // relative to now
	}{
		{name: "ok/fresh one hour", nb: -10 * time.Second, na: time.Hour, want: 1795 * time.Second},
		{name: "ok/short TTL past half-life on arrival", nb: -10 * time.Second, na: 4 * time.Second, want: 2 * time.Second},
		{name: "ok/about to expire waits a second", nb: -10 * time.Second, na: time.Second, want: time.Second},
		{name: "ok/expired waits a second", nb: -10 * time.Second, na: -time.Second, want: time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextRenewal(now, now.Add(tt.nb), now.Add(tt.na)); !got.Equal(now.Add(tt.want)) {
				t.Fatalf("nextRenewal = %v, want now+%v", got.Sub(now), tt.want)
			}
		})
	}
}

func TestNextSync(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		dues []due
		want time.Time
	}{
		{name: "ok/nothing due", want: now.Add(30 * time.Second)},
		{name: "ok/not ok ignored", dues: []due{{at: now.Add(time.Second), ok: false}}, want: now.Add(30 * time.Second)},
		{name: "ok/rotation first", dues: []due{{at: now.Add(10 * time.Second), ok: true}, {at: now.Add(20 * time.Second), ok: true}}, want: now.Add(10 * time.Second)},
		{name: "ok/later than interval", dues: []due{{at: now.Add(time.Hour), ok: true}}, want: now.Add(30 * time.Second)},
		{name: "ok/already due retried later", dues: []due{{at: now.Add(-time.Second), ok: true}}, want: now.Add(5 * time.Second)},
		{name: "ok/zero time retried later", dues: []due{{ok: true}}, want: now.Add(5 * time.Second)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextSync(now, 30*time.Second, 5*time.Second, tt.dues...); !got.Equal(tt.want) {
				t.Fatalf("nextSync = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTaskSchedule checks the loop's timing in a synctest bubble: it runs
// at the time do asks for, early on a trigger, after backoff on errors, and
// stops on a fatal error or when ctx ends.
func TestTaskSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var runs []time.Duration
		errFatal := errors.New("fatal")
		results := []error{nil, nil, errors.New("transient"), nil, errFatal}
		trigger := make(chan struct{}, 1)
		tk := &task{
			do: func(context.Context) (time.Time, error) {
				runs = append(runs, time.Since(start))
				err := results[len(runs)-1]
				return time.Now().Add(10 * time.Second), err
			},
			trigger: trigger,
			fatal:   func(err error) bool { return errors.Is(err, errFatal) },
			// Fixed delays: jitter between d and d.
			backoff: newRetryBackoff(2*time.Second, 2*time.Second, newJitter(rand.New(rand.NewPCG(1, 1)))),
		}
		done := make(chan error, 1)
		go func() { done <- tk.run(t.Context(), start.Add(time.Second)) }()

		// Run 1 at 1s, run 2 at 11s (as asked). Trigger at 15s: run 3
		// fails; run 4 after the backoff delay (in [1s, 2s]); run 5 at 10s
		// after that is fatal.
		time.Sleep(15 * time.Second)
		synctest.Wait()
		trigger <- struct{}{}
		err := <-done
		if !errors.Is(err, errFatal) {
			t.Fatalf("run = %v, want the fatal error", err)
		}
		if len(runs) != 5 {
			t.Fatalf("runs = %v, want 5", runs)
		}
		if runs[0] != time.Second || runs[1] != 11*time.Second || runs[2] != 15*time.Second {
			t.Fatalf("runs = %v, want 1s, 11s, 15s first", runs)
		}
		if d := runs[3] - runs[2]; d < time.Second || d > 2*time.Second {
			t.Fatalf("retry after %v, want the backoff delay", d)
		}
		if d := runs[4] - runs[3]; d != 10*time.Second {
			t.Fatalf("run after success at +%v, want +10s", d)
		}
	})
}

func TestTaskStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		runs := 0
		tk := &task{
			do: func(context.Context) (time.Time, error) {
				runs++
				return time.Now().Add(time.Hour), nil
			},
			backoff: newRetryBackoff(time.Second, time.Second, newJitter(nil)),
		}
		done := make(chan error, 1)
		go func() { done <- tk.run(ctx, time.Time{}) }()
		time.Sleep(time.Minute)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run after cancel = %v, want nil", err)
		}
		if runs != 1 {
			t.Fatalf("runs = %d, want 1", runs)
		}
	})
}

// TestRenewalSchedule drives the agent SVID renewal timing (RenewAt through
// the task loop) in a bubble: a one-hour SVID is renewed at 30 min, the
// renewed one 30 min later, and a failed renewal is retried with backoff.
func TestRenewalSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		notBefore, notAfter := start, start.Add(time.Hour)
		var renewals []time.Duration
		fail := map[int]bool{1: true} // the second renewal attempt fails once
		attempt := 0
		tk := &task{
			do: func(context.Context) (time.Time, error) {
				if time.Now().Before(RenewAt(notBefore, notAfter)) {
					return RenewAt(notBefore, notAfter), nil
				}
				attempt++
				if fail[attempt-1] {
					return time.Time{}, errors.New("server unavailable")
				}
				renewals = append(renewals, time.Since(start))
				notBefore, notAfter = time.Now(), time.Now().Add(time.Hour)
				return RenewAt(notBefore, notAfter), nil
			},
			backoff: newRetryBackoff(time.Second, time.Second, newJitter(nil)),
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- tk.run(ctx, RenewAt(notBefore, notAfter)) }()
		time.Sleep(62 * time.Minute)
		cancel()
		<-done
		if len(renewals) != 2 || renewals[0] != 30*time.Minute {
			t.Fatalf("renewals at %v, want 30m then ~60m", renewals)
		}
		if d := renewals[1] - 60*time.Minute; d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("second renewal at %v, want 60m plus one backoff delay", renewals[1])
		}
	})
}

func TestRefusalOf(t *testing.T) {
	withReason := func(r types.PermissionDeniedDetails_Reason) error {
		st, err := status.New(codes.PermissionDenied, "denied").WithDetails(&types.PermissionDeniedDetails{Reason: r})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tt := range []struct {
		name     string
		err      error
		ok       bool
		reattest bool
	}{
		{name: "ok/banned", err: withReason(types.PermissionDeniedDetails_AGENT_BANNED), ok: true},
		{name: "ok/not attested (evicted)", err: withReason(types.PermissionDeniedDetails_AGENT_NOT_ATTESTED), ok: true, reattest: true},
		{name: "ok/expired", err: withReason(types.PermissionDeniedDetails_AGENT_EXPIRED), ok: true, reattest: true},
		{name: "ok/not active", err: withReason(types.PermissionDeniedDetails_AGENT_NOT_ACTIVE), ok: true, reattest: true},
		{name: "ok/must reattest", err: withReason(types.PermissionDeniedDetails_AGENT_MUST_REATTEST), ok: true, reattest: true},
		{name: "ok/wrapped", err: wrapErr(withReason(types.PermissionDeniedDetails_AGENT_BANNED)), ok: true},
		{name: "fail/plain permission denied", err: status.Error(codes.PermissionDenied, "no")},
		{name: "fail/unavailable", err: status.Error(codes.Unavailable, "down")},
		{name: "fail/not a status", err: errors.New("boom")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reason, ok := refusalOf(tt.err)
			if ok != tt.ok {
				t.Fatalf("refusalOf ok = %v, want %v", ok, tt.ok)
			}
			if ok && mustReattest(reason) != tt.reattest {
				t.Fatalf("mustReattest(%v) = %v, want %v", reason, !tt.reattest, tt.reattest)
			}
		})
	}
}

func TestEntryIsStale(t *testing.T) {
	e := &types.Entry{Id: "a", RevisionNumber: 3, CreatedAt: 100}
	for _, tt := range []struct {
		name      string
		rev, crt  int64
		wantStale bool
	}{
		{name: "ok/same", rev: 3, crt: 100},
		{name: "ok/no created_at from server", rev: 3, crt: 0},
		{name: "ok/new revision", rev: 4, crt: 100, wantStale: true},
		{name: "ok/recreated with same ID", rev: 3, crt: 200, wantStale: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := entryIsStale(e, tt.rev, tt.crt); got != tt.wantStale {
				t.Fatalf("entryIsStale = %v, want %v", got, tt.wantStale)
			}
		})
	}
}
