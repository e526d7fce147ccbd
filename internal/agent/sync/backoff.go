package sync

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// jitter is a *rand.Rand shared by the loops of a Client or Syncer.
type jitter struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newJitter(r *rand.Rand) *jitter {
	if r == nil {
		r = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &jitter{r: r}
}

// between returns a duration uniformly distributed in [lo, hi].
func (j *jitter) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return lo + time.Duration(j.r.Int64N(int64(hi-lo)+1))
}

// retryBackoff yields bounded exponential delays with jitter: attempt n (from 0)
// waits a uniformly random duration in [d/2, d], d = min(max, initial*2^n).
// It is not safe for concurrent use; each loop owns one.
type retryBackoff struct {
	initial, max time.Duration
	jitter       *jitter
	n            int
}

func newRetryBackoff(initial, max time.Duration, j *jitter) *retryBackoff {
	return &retryBackoff{initial: initial, max: max, jitter: j}
}

func (b *retryBackoff) next() time.Duration {
	d := b.initial
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.n++
	return b.jitter.between(d/2, d)
}

func (b *retryBackoff) reset() { b.n = 0 }

// task is a loop that runs do when it is due, when trigger fires, or after
// a backoff delay when do failed. do returns when it wants to run next.
// The loop has no sockets of its own: do does the I/O.
type task struct {
	do      func(ctx context.Context) (next time.Time, err error)
	trigger <-chan struct{}
	// fatal reports the errors that end the loop; others are retried.
	fatal   func(error) bool
	backoff *retryBackoff
	// failed is told of each retried error and the delay before the retry.
	failed func(err error, retry time.Duration)
}

// run runs the loop until ctx ends (nil) or do fails fatally (that error).
// The first run is at first (now, when zero).
func (t *task) run(ctx context.Context, first time.Time) error {
	next := first
	for {
		timer := time.NewTimer(max(time.Until(next), 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-t.trigger:
			timer.Stop()
		case <-timer.C:
		}
		n, err := t.do(ctx)
		switch {
		case err == nil:
			t.backoff.reset()
			next = n
		case ctx.Err() != nil:
			return nil
		case t.fatal != nil && t.fatal(err):
			return err
		default:
			d := t.backoff.next()
			if t.failed != nil {
				t.failed(err, d)
			}
			next = time.Now().Add(d)
		}
	}
}

// sleep waits for d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
