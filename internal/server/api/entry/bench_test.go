package entry_test

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/api/entry"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

func benchFixture(b *testing.B) (*datastore.Store, entryv1.EntryClient) {
	b.Helper()
	store := datastoretest.OpenSQLite(b)
	svc, err := entry.New(entry.Config{TrustDomain: td, Store: store})
	if err != nil {
		b.Fatal(err)
	}
	return store, entryv1.NewEntryClient(apitest.Serve(b, svc).Conn)
}

// BenchmarkBatchCreateEntry creates entries through the real gRPC API over
// the admin socket on SQLite, in batches of 100 and 1,000 (the sizes of
// typical -data files).
func BenchmarkBatchCreateEntry(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchBatchCreate(b, batch) })
	}
}

func benchBatchCreate(b *testing.B, batch int) {
	_, client := benchFixture(b)
	n := 0
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		es := make([]*types.Entry, batch)
		for i := range es {
			es[i] = newEntry(n)
			n++
		}
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: es, OutputMask: &types.EntryMask{}})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.Results {
			if r.Status.Code != 0 {
				b.Fatal(r.Status)
			}
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkListEntries100k pages through 100,000 entries with the CLI's
// page size, and reports the server process's heap and RSS afterwards.
func BenchmarkListEntries100k(b *testing.B) {
	const total, page = 100_000, 500
	store, client := benchFixture(b)
	for i := 0; i < total; i += 1000 {
		es := make([]*datastore.Entry, 0, 1000)
		for j := i; j < i+1000; j++ {
			es = append(es, &datastore.Entry{
				SPIFFEID:  fmt.Sprintf("spiffe://example.org/workload/%d", j),
				ParentID:  fmt.Sprintf("spiffe://example.org/spire/agent/join_token/node-%d", j%100),
				Selectors: []datastore.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", j)}, {Type: "k8s", Value: "ns:default"}},
			})
		}
		if _, _, err := store.CreateEntries(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	b.ResetTimer()
	for b.Loop() {
		seen, token := 0, ""
		for {
			resp, err := client.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: page, PageToken: token})
			if err != nil {
				b.Fatal(err)
			}
			seen += len(resp.Entries)
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
		if seen != total {
			b.Fatalf("listed %d entries, want %d", seen, total)
		}
	}
	b.StopTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(rssMiB(), "rss-MiB")
}

func rssMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
