package endpoints

import (
	"context"
	"net"
	"sync"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Per-IP rate limits of SPIRE 1.13 (pkg/server/api/limits), per second: node
// attestation, and signing (X509-SVID CSRs, JWT-SVIDs, agent renewals).
// Callers on the admin socket are not limited (CONFORMANCE T14).
const (
	AttestLimitPerIP = 1
	SignLimitPerIP   = 500
)

// limiter is a token bucket per client IP. A caller over the rate waits for
// its turn (as SPIRE's limiter does) instead of failing; a request larger
// than the bucket fails with ResourceExhausted. Safe for concurrent use.
type limiter struct {
	rate    float64 // tokens per second, also the bucket size
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(perSecond int) *limiter {
	return &limiter{rate: float64(perSecond), buckets: make(map[string]*bucket)}
}

// wait takes n tokens from ip's bucket, sleeping until they are available or
// ctx ends.
func (l *limiter) wait(ctx context.Context, ip string, n int) error {
	if float64(n) > l.rate {
		return status.Errorf(codes.ResourceExhausted, "rate (%d) exceeds burst size (%d)", n, int(l.rate))
	}
	now := time.Now()
	l.mu.Lock()
	if len(l.buckets) > 4096 {
		for k, b := range l.buckets {
			if now.Sub(b.last) > time.Minute {
				delete(l.buckets, k)
			}
		}
	}
	b, ok := l.buckets[ip]
	if !ok {
		b = &bucket{tokens: l.rate, last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	b.tokens -= float64(n) // reserve, possibly in debt
	delay := time.Duration(0)
	if b.tokens < 0 {
		delay = time.Duration(-b.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if delay == 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		b.tokens += float64(n) // give the reservation back
		l.mu.Unlock()
		return status.FromContextError(ctx.Err()).Err()
	}
}

// limits applies the per-IP limits to the methods SPIRE limits.
type limits struct {
	attest, sign *limiter
}

func newLimits() *limits {
	return &limits{attest: newLimiter(AttestLimitPerIP), sign: newLimiter(SignLimitPerIP)}
}

// apply waits for the tokens method needs, for a TCP caller at addr; req is
// nil for streams.
func (l *limits) apply(ctx context.Context, method string, addr net.Addr, req any) error {
	if l == nil || addr == nil {
		return nil
	}
	ip := addr.String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	switch method {
	case "/spire.api.server.agent.v1.Agent/AttestAgent":
		return l.attest.wait(ctx, ip, 1)
	case "/spire.api.server.svid.v1.SVID/BatchNewX509SVID":
		n := 1
		if r, ok := req.(*svidv1.BatchNewX509SVIDRequest); ok && len(r.Params) > 0 {
			n = len(r.Params)
		}
		return l.sign.wait(ctx, ip, n)
	case "/spire.api.server.svid.v1.SVID/NewJWTSVID", "/spire.api.server.agent.v1.Agent/RenewAgent":
		return l.sign.wait(ctx, ip, 1)
	}
	return nil
}
