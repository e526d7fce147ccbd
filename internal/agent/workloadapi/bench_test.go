package workloadapi_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
)

func reportLatencies(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "calls/s")
}

// BenchmarkFetchX509SVID: latency of one FetchX509SVID call (open the
// stream, attest the caller, receive the first message, close the stream),
// at concurrency 1 and 32 (one connection per concurrent workload).
func BenchmarkFetchX509SVID(b *testing.B) {
	for _, conc := range []int{1, 32} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			e := newEnv(b)
			e.addIdentity(entry("a", "spiffe://neural-hive.local/workload/web", mySelector()))
			clients := make([]workload.SpiffeWorkloadAPIClient, conc)
			for i := range clients {
				clients[i] = e.client()
			}
			call := func(c workload.SpiffeWorkloadAPIClient) error {
				ctx, cancel := context.WithCancel(withHeader(context.Background()))
				defer cancel()
				s, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			}
			for _, c := range clients { // warm up connections
				if err := call(c); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([][]time.Duration, conc)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range conc {
				n := b.N / conc
				if w < b.N%conc {
					n++
				}
				wg.Go(func() {
					for range n {
						t0 := time.Now()
						if err := call(clients[w]); err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			reportLatencies(b, slices.Concat(lat...), elapsed)
		})
	}
}

// BenchmarkPropagation: from a cache update (a rotated SVID, as the sync
// loop would set it) to the open FetchX509SVID stream receiving the new
// full state.
func BenchmarkPropagation(b *testing.B) {
	e := newEnv(b)
	en := entry("a", "spiffe://neural-hive.local/workload/web", mySelector())
	e.addIdentity(en)
	pool := make([]*cache.X509SVID, 16)
	for i := range pool {
		pool[i] = e.ca.SVIDFor(b, en)
	}
	ctx, cancel := context.WithCancel(withHeader(context.Background()))
	defer cancel()
	s, err := e.client().FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		t0 := time.Now()
		e.cache.SetSVIDs(map[string]*cache.X509SVID{"a": pool[i%len(pool)]})
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatencies(b, lat, elapsed)
}
