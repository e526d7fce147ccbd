package cache_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/agent/cache/cachetest"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkCacheMemory reports the heap the cache retains per authorized
// entry with its X509-SVID (P-256 key, leaf, shared intermediate) and
// indexes, and times a re-sync with an unchanged entry list.
func BenchmarkCacheMemory(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			ca := cachetest.NewCA(b, td)
			before := heapInUse()
			c := newCache(b, cache.Config{})
			c.SetBundle(ca.Bundle())
			entries := make([]*cache.Entry, n)
			for i := range entries {
				entries[i] = cachetest.Entry(fmt.Sprintf("entry-%06d", i), fmt.Sprintf("spiffe://neural-hive.local/workload/%d", i),
					fmt.Sprintf("unix:uid:%d", i), fmt.Sprintf("unix:gid:%d", i%100))
			}
			c.SetEntries(entries)
			for i := 0; i < n; i += 500 {
				svids := make(map[string]*cache.X509SVID, 500)
				for _, e := range entries[i:min(i+500, n)] {
					svids[e.ID] = ca.SVIDFor(b, e)
				}
				c.SetSVIDs(svids)
			}
			retained := heapInUse() - before

			sub := c.Subscribe([]string{"unix:uid:7", "unix:gid:7"})
			defer sub.Close()
			b.ResetTimer()
			for b.Loop() {
				c.SetEntries(entries)
			}
			b.ReportMetric(float64(retained)/float64(n), "heap-B/entry")
			b.ReportMetric(float64(retained)/(1<<20), "heap-MiB")
			runtime.KeepAlive(c)
		})
	}
}

// BenchmarkSnapshot times the identity set of one workload among 10,000
// entries.
func BenchmarkSnapshot(b *testing.B) {
	ca := cachetest.NewCA(b, td)
	c := newCache(b, cache.Config{})
	c.SetBundle(ca.Bundle())
	entries := make([]*cache.Entry, 10000)
	svids := make(map[string]*cache.X509SVID)
	for i := range entries {
		entries[i] = cachetest.Entry(fmt.Sprintf("entry-%06d", i), "spiffe://neural-hive.local/w",
			fmt.Sprintf("unix:uid:%d", i), fmt.Sprintf("unix:gid:%d", i%100))
		if i%100 == 7 {
			svids[entries[i].ID] = ca.SVIDFor(b, entries[i])
		}
	}
	c.SetEntries(entries)
	c.SetSVIDs(svids)
	sel := []string{"unix:uid:7", "unix:gid:7"}
	for b.Loop() {
		if u := c.Snapshot(sel); !u.HasIdentity() {
			b.Fatal("no identity")
		}
	}
}
