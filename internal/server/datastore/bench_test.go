package datastore_test

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

func benchEntry(i int) *datastore.Entry {
	return &datastore.Entry{
		SPIFFEID:    fmt.Sprintf("spiffe://example.org/ns/app/sa/workload-%d", i),
		ParentID:    fmt.Sprintf("spiffe://example.org/spire/agent/k8s_psat/cluster/node-%d", i%500),
		Selectors:   []datastore.Selector{{Type: "k8s", Value: "ns:app"}, {Type: "k8s", Value: fmt.Sprintf("sa:workload-%d", i)}},
		X509SVIDTTL: 3600,
		DNSNames:    []string{fmt.Sprintf("workload-%d.app.svc", i)},
	}
}

// createBatches creates n entries numbered from first in batches.
func createBatches(tb testing.TB, s *datastore.Store, first, n, batch int) {
	tb.Helper()
	for start := first; start < first+n; start += batch {
		entries := make([]*datastore.Entry, 0, batch)
		for i := start; i < min(start+batch, first+n); i++ {
			entries = append(entries, benchEntry(i))
		}
		_, errs, err := s.CreateEntries(tb.Context(), entries)
		requireNoError(tb, err)
		for _, err := range errs {
			requireNoError(tb, err)
		}
	}
}

// BenchmarkCreateEntriesBatch creates entries on SQLite in batches of 1,000,
// one transaction per batch, and reports entries per second.
func BenchmarkCreateEntriesBatch(b *testing.B) {
	const batch = 1000
	s := datastoretest.OpenSQLite(b)
	n := 0
	cpu0 := cpuTime(b)
	for b.Loop() {
		createBatches(b, s, n, batch, batch)
		n += batch
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(n)/(cpuTime(b)-cpu0).Seconds(), "entries/cpu-s")
}

// BenchmarkListEntriesPaged lists 100,000 entries on SQLite in pages of
// 1,000 and reports the time of one full listing and the heap in use right
// after it.
func BenchmarkListEntriesPaged(b *testing.B) {
	const total, pageSize = 100_000, 1000
	s := datastoretest.OpenSQLite(b)
	createBatches(b, s, 0, total, 5000)
	var m runtime.MemStats
	b.ReportAllocs()
	var cpu0 time.Duration
	for b.Loop() {
		if cpu0 == 0 {
			cpu0 = cpuTime(b)
		}
		req := &datastore.ListEntriesRequest{Pagination: &datastore.Pagination{PageSize: pageSize}}
		listed := 0
		for {
			page, token, err := s.ListEntries(b.Context(), req)
			if err != nil {
				b.Fatal(err)
			}
			listed += len(page)
			if token == "" {
				break
			}
		}
		if listed != total {
			b.Fatalf("listed %d entries, want %d", listed, total)
		}
	}
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/listing")
	b.ReportMetric(float64(m.HeapInuse)/(1<<20), "heap-inuse-MiB")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/listing")
}

// cpuTime returns the CPU time (user + system) this process has used: on a
// shared machine it says more than wall time.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
