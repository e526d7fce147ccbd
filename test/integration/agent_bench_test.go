package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// BenchmarkPropagation measures, from `spire-server entry create` returning to
// the watching go-spiffe client receiving the new SVID, over real processes.
// It reports p50 and p99 in ms (target p99 < 100 ms; SPIRE 1.13 takes seconds).
func BenchmarkPropagation(b *testing.B) {
	s := newServer(b, serverOptions{})
	a := newAgent(b, s, s.token(agentAlias))
	c, err := workloadapi.New(context.Background(), workloadapi.WithAddr("unix://"+a.socket))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	updates := make(chan int, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = c.WatchX509Context(ctx, countWatcher{updates})
	}()
	// Warm up: the first identity opens the watcher's stream.
	s.createEntry("-spiffeID", "spiffe://neural-hive.local/bench/warmup", "-parentID", agentAlias, "-selector", uidSelector)
	for n := range updates {
		if n >= 1 {
			break
		}
	}
	var fromReturn, fromInvoke []time.Duration
	i := 1
	for b.Loop() {
		i++
		id := fmt.Sprintf("spiffe://neural-hive.local/bench/p%d-%d", time.Now().UnixNano(), i)
		invoked := time.Now()
		_, errOut, code := s.cli("entry", "create", "-spiffeID", id, "-parentID", agentAlias, "-selector", uidSelector)
		if code != 0 {
			b.Fatal(errOut)
		}
		returned := time.Now()
		for n := range updates {
			if n >= i {
				break
			}
		}
		// The push often lands before the CLI process has even exited: then
		// the latency from its return is zero.
		received := time.Now()
		fromReturn = append(fromReturn, received.Sub(returned))
		fromInvoke = append(fromInvoke, received.Sub(invoked))
	}
	reportPercentiles(b, fromReturn)
	slices.Sort(fromInvoke)
	b.ReportMetric(float64(fromInvoke[len(fromInvoke)/2].Microseconds())/1000, "p50-from-invoke-ms")
	b.ReportMetric(float64(fromInvoke[min(len(fromInvoke)-1, len(fromInvoke)*99/100)].Microseconds())/1000, "p99-from-invoke-ms")
}

type countWatcher struct{ c chan int }

func (w countWatcher) OnX509ContextUpdate(x *workloadapi.X509Context) { w.c <- len(x.SVIDs) }
func (w countWatcher) OnX509ContextWatchError(error)                  {}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}

// BenchmarkAgentColdStart measures an agent restart with a stored SVID to a
// passing `spire-agent healthcheck` (target < 100 ms).
func BenchmarkAgentColdStart(b *testing.B) {
	s := newServer(b, serverOptions{})
	a := newAgent(b, s, s.token(""))
	var lat []time.Duration
	for b.Loop() {
		a.stop()
		start := time.Now()
		a.startNoWait("")
		waitServing(b, a.socket, 20*time.Second)
		lat = append(lat, time.Since(start))
	}
	reportPercentiles(b, lat)
}

// BenchmarkAgentRSS reports the agent's resident memory idle and with 1,000
// and 10,000 entries authorized to it (each with its SVID signed and cached).
func BenchmarkAgentRSS(b *testing.B) {
	for b.Loop() {
		s := newServer(b, serverOptions{})
		a := newAgent(b, s, s.token(agentAlias))
		time.Sleep(2 * time.Second)
		b.ReportMetric(rssMiB(b, a.cmd.Process.Pid), "idle-MiB")
		total := 0
		for _, n := range []int{1000, 9000} {
			batch(b, s, total, n)
			total += n
			// The HTTP endpoint has no message-size ceiling (gRPC clients
			// refuse responses over 4 MB: 10,000 SVIDs with their bundles).
			waitFor(b, strconv.Itoa(total)+" SVIDs at the agent", 5*time.Minute, func() bool {
				return httpSVIDCount(a.socket) == total
			})
			b.ReportMetric(rssMiB(b, a.cmd.Process.Pid), fmt.Sprintf("%d-entries-MiB", total))
		}
	}
}

// httpSVIDCount asks the agent's HTTP endpoint how many SVIDs the caller has.
func httpSVIDCount(socket string) int {
	c := http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	resp, err := c.Get("http://localhost/v1/spiffe/workload/x509svid")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var doc struct {
		SVIDs []json.RawMessage `json:"svids"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return -1
	}
	return len(doc.SVIDs)
}

// batch creates n entries for this process's uid through `entry create -data`.
func batch(tb testing.TB, s *server, from, n int) {
	tb.Helper()
	type sel struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	type entry struct {
		SPIFFEID  string `json:"spiffe_id"`
		ParentID  string `json:"parent_id"`
		Selectors []sel  `json:"selectors"`
	}
	for off := 0; off < n; off += 1000 {
		var doc struct {
			Entries []entry `json:"entries"`
		}
		for i := off; i < min(n, off+1000); i++ {
			doc.Entries = append(doc.Entries, entry{
				SPIFFEID:  fmt.Sprintf("spiffe://neural-hive.local/bench/e%06d", from+i),
				ParentID:  agentAlias,
				Selectors: []sel{{"unix", strings.TrimPrefix(uidSelector, "unix:")}},
			})
		}
		raw, _ := json.Marshal(doc)
		path := filepath.Join(s.dir, "batch.json")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			tb.Fatal(err)
		}
		if _, errOut, code := s.cli("entry", "create", "-data", path, "-output", "json"); code != 0 {
			tb.Fatalf("batch create: %s", errOut)
		}
	}
}

func rssMiB(tb testing.TB, pid int) float64 {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}
