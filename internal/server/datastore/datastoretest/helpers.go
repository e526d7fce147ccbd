package datastoretest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

func requireNoError(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("unexpected error: %v", err)
	}
}

// requireError checks that err wraps target and that its text contains msg.
func requireError(tb testing.TB, err, target error, msg string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("expected an error wrapping %v containing %q, got nil", target, msg)
	}
	if !errors.Is(err, target) {
		tb.Fatalf("expected an error wrapping %v, got %v", target, err)
	}
	if !strings.Contains(err.Error(), msg) {
		tb.Fatalf("expected an error containing %q, got %q", msg, err.Error())
	}
}

func requireEqual[T any](tb testing.TB, got, want T, what string) {
	tb.Helper()
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("%s:\n got: %+v\nwant: %+v", what, got, want)
	}
}

// sel parses "type:value".
func sel(s string) datastore.Selector {
	t, v, _ := strings.Cut(s, ":")
	return datastore.Selector{Type: t, Value: v}
}

func sels(ss ...string) []datastore.Selector {
	out := make([]datastore.Selector, 0, len(ss))
	for _, s := range ss {
		out = append(out, sel(s))
	}
	return out
}

const td = "spiffe://example.org"

func entry(path, parent string, selectors ...string) *datastore.Entry {
	return &datastore.Entry{
		SPIFFEID:  td + path,
		ParentID:  td + parent,
		Selectors: sels(selectors...),
	}
}

func createEntry(tb testing.TB, s *datastore.Store, e *datastore.Entry) *datastore.Entry {
	tb.Helper()
	out, err := s.CreateEntry(context.Background(), e)
	requireNoError(tb, err)
	return out
}

func createBundle(tb testing.TB, s *datastore.Store, trustDomain string, ders ...string) *datastore.Bundle {
	tb.Helper()
	b := &datastore.Bundle{TrustDomain: trustDomain}
	for _, d := range ders {
		b.X509Authorities = append(b.X509Authorities, datastore.X509Authority{Certificate: []byte(d)})
	}
	out, err := s.CreateBundle(context.Background(), b)
	requireNoError(tb, err)
	return out
}

// state is everything observable through the store's read methods, to check
// that a refused request changed nothing.
type state struct {
	Entries []*datastore.Entry
	Bundles []*datastore.Bundle
	Nodes   []*datastore.AttestedNode
	Seq     int64
}

func snapshot(tb testing.TB, s *datastore.Store) state {
	tb.Helper()
	ctx := context.Background()
	var st state
	var err error
	st.Entries, _, err = s.ListEntries(ctx, nil)
	requireNoError(tb, err)
	st.Bundles, _, err = s.ListBundles(ctx, nil)
	requireNoError(tb, err)
	st.Nodes, _, err = s.ListAttestedNodes(ctx, &datastore.ListAttestedNodesRequest{FetchSelectors: true})
	requireNoError(tb, err)
	st.Seq, err = s.LatestChangeSeq(ctx)
	requireNoError(tb, err)
	return st
}

func requireUnchanged(tb testing.TB, s *datastore.Store, before state) {
	tb.Helper()
	requireEqual(tb, snapshot(tb, s), before, "state after a refused request")
}

func entryIDs(entries []*datastore.Entry) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.ID)
	}
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}
