package datastore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

// durabilityHelperEnv carries the database type and connection string (a
// JSON array) of the helper process of TestDurability.
const durabilityHelperEnv = "HIVE_DATASTORE_DURABILITY_HELPER"

// TestDurability: a child process creates entries as fast as it can and
// prints the ID of each one the store acknowledged; the parent kills it with
// SIGKILL in the middle of the burst, reopens the database and finds every
// acknowledged entry.
func TestDurability(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.config(t)
			// Create the schema first so the child spends its life writing.
			s := datastoretest.Open(t, cfg)
			requireNoError(t, s.Close())

			acked := runAndKill(t, cfg, 400)
			if len(acked) < 400 {
				t.Fatalf("only %d acknowledged entries before the kill", len(acked))
			}
			s = datastoretest.Open(t, cfg)
			got, err := s.FetchEntries(t.Context(), acked)
			requireNoError(t, err)
			var lost []string
			for _, id := range acked {
				if got[id] == nil {
					lost = append(lost, id)
				}
			}
			if len(lost) > 0 {
				t.Fatalf("%d of %d acknowledged entries lost after SIGKILL, e.g. %s", len(lost), len(acked), lost[0])
			}
			n, err := s.CountEntries(t.Context(), nil)
			requireNoError(t, err)
			t.Logf("%d entries acknowledged before SIGKILL, %d in the database", len(acked), n)
			// The database is still writable after recovery.
			_, err = s.CreateEntry(t.Context(), &datastore.Entry{SPIFFEID: "spiffe://td/after", ParentID: "spiffe://td/n",
				Selectors: []datastore.Selector{{Type: "after", Value: "1"}}})
			requireNoError(t, err)
		})
	}
}

// runAndKill starts the helper on cfg, kills it with SIGKILL once it has
// acknowledged killAfter entries, and returns every ID it acknowledged (only
// complete lines).
func runAndKill(t *testing.T, cfg datastore.Config, killAfter int) []string {
	t.Helper()
	raw, err := json.Marshal([2]string{cfg.DatabaseType, cfg.ConnectionString})
	requireNoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDurabilityHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), durabilityHelperEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	requireNoError(t, err)
	requireNoError(t, cmd.Start())

	var acked []string
	r := bufio.NewReader(stdout)
	killed := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("read helper output: %v", err)
			}
			break // a partial last line was not acknowledged completely
		}
		id, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ACK ")
		if !ok {
			continue // test framework output
		}
		acked = append(acked, id)
		if !killed && len(acked) >= killAfter {
			requireNoError(t, cmd.Process.Kill()) // SIGKILL
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("helper exited before the kill: %v", err)
	}
	return acked
}

// TestDurabilityHelperProcess is the child of TestDurability; it does nothing
// in a normal run.
func TestDurabilityHelperProcess(t *testing.T) {
	raw := os.Getenv(durabilityHelperEnv)
	if raw == "" {
		return
	}
	var typeAndConn [2]string
	if err := json.Unmarshal([]byte(raw), &typeAndConn); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	cfg := datastore.Config{DatabaseType: typeAndConn[0], ConnectionString: typeAndConn[1]}
	ctx := context.Background()
	s, err := datastore.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	ack := func(id string) {
		// os.Stdout is unbuffered: the line leaves the process before the
		// next write starts.
		fmt.Fprintf(os.Stdout, "ACK %s\n", id)
	}
	for i := 0; ; i++ {
		mk := func(j int) *datastore.Entry {
			return &datastore.Entry{SPIFFEID: fmt.Sprintf("spiffe://td/w%d-%d", i, j), ParentID: "spiffe://td/n",
				Selectors: []datastore.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d-%d", i, j)}}}
		}
		if i%2 == 0 {
			e, err := s.CreateEntry(ctx, mk(0))
			if err != nil {
				fmt.Fprintln(os.Stderr, "helper:", err)
				os.Exit(2)
			}
			ack(e.ID)
			continue
		}
		batch := []*datastore.Entry{mk(0), mk(1), mk(2), mk(3), mk(4)}
		got, errs, err := s.CreateEntries(ctx, batch)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		for j, e := range got {
			if errs[j] != nil {
				fmt.Fprintln(os.Stderr, "helper:", errs[j])
				os.Exit(2)
			}
			ack(e.ID)
		}
	}
}
