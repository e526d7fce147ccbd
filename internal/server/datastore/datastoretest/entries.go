package datastoretest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

func testEntries(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	createBundle(t, s, "spiffe://fed-a.org", "a")
	createBundle(t, s, "spiffe://fed-b.org", "b")

	existing := createEntry(t, s, &datastore.Entry{
		ID:            "existing-id",
		SPIFFEID:      td + "/existing",
		ParentID:      td + "/node",
		Selectors:     sels("unix:uid:1", "k8s:ns:a", "unix:uid:1"),
		FederatesWith: []string{"spiffe://fed-b.org", "spiffe://fed-a.org"},
		DNSNames:      []string{"b.example", "a.example"},
		X509SVIDTTL:   60,
		JWTSVIDTTL:    30,
		Hint:          "external",
	})

	t.Run("ok/create normalizes and fills", func(t *testing.T) {
		requireEqual(t, existing.ID, "existing-id", "ID")
		requireEqual(t, existing.Selectors, sels("k8s:ns:a", "unix:uid:1"), "selectors sorted, deduplicated")
		requireEqual(t, existing.FederatesWith, []string{"spiffe://fed-a.org", "spiffe://fed-b.org"}, "federates with sorted")
		requireEqual(t, existing.DNSNames, []string{"b.example", "a.example"}, "DNS names keep their order")
		requireEqual(t, existing.RevisionNumber, int64(0), "revision")
		if existing.CreatedAt == 0 {
			t.Fatal("CreatedAt not set")
		}
		got, err := s.FetchEntry(ctx, existing.ID)
		requireNoError(t, err)
		requireEqual(t, got, existing, "fetched entry")
	})

	t.Run("ok/create assigns a UUID", func(t *testing.T) {
		e := createEntry(t, s, entry("/uuid", "/node", "unix:uid:2"))
		if len(e.ID) != 36 || strings.Count(e.ID, "-") != 4 {
			t.Fatalf("ID %q is not a UUID", e.ID)
		}
		requireEqual(t, e.DNSNames, []string{}, "DNS names")
		requireEqual(t, e.FederatesWith, []string{}, "federates with")
	})

	t.Run("ok/same IDs with other selectors are not similar", func(t *testing.T) {
		createEntry(t, s, &datastore.Entry{SPIFFEID: td + "/existing", ParentID: td + "/node", Selectors: sels("unix:uid:1")})
	})

	for _, tt := range []struct {
		name   string
		entry  *datastore.Entry
		target error
		msg    string
	}{
		{
			name:   "fail/same ID",
			entry:  &datastore.Entry{ID: "existing-id", SPIFFEID: td + "/other", ParentID: td + "/node", Selectors: sels("unix:uid:9")},
			target: datastore.ErrAlreadyExists,
			msg:    `entry "existing-id" already exists`,
		},
		{
			name: "fail/similar entry",
			entry: &datastore.Entry{SPIFFEID: td + "/existing", ParentID: td + "/node",
				Selectors: sels("unix:uid:1", "k8s:ns:a"), Admin: true},
			target: datastore.ErrAlreadyExists,
			msg:    "similar entry already exists",
		},
		{
			name:   "fail/missing selectors",
			entry:  &datastore.Entry{SPIFFEID: td + "/x", ParentID: td + "/node"},
			target: datastore.ErrInvalidArgument,
			msg:    "invalid registration entry: missing selector list",
		},
		{
			name:   "fail/missing SPIFFE ID",
			entry:  &datastore.Entry{ParentID: td + "/node", Selectors: sels("unix:uid:3")},
			target: datastore.ErrInvalidArgument,
			msg:    "invalid registration entry: missing SPIFFE ID",
		},
		{
			name:   "fail/entry ID with invalid characters",
			entry:  &datastore.Entry{ID: "bad id!", SPIFFEID: td + "/x", ParentID: td + "/node", Selectors: sels("unix:uid:3")},
			target: datastore.ErrInvalidArgument,
			msg:    "entry ID contains invalid characters",
		},
		{
			name:   "fail/entry ID too long",
			entry:  &datastore.Entry{ID: strings.Repeat("a", 256), SPIFFEID: td + "/x", ParentID: td + "/node", Selectors: sels("unix:uid:3")},
			target: datastore.ErrInvalidArgument,
			msg:    "entry ID too long",
		},
		{
			name:   "fail/negative TTL",
			entry:  &datastore.Entry{SPIFFEID: td + "/x", ParentID: td + "/node", Selectors: sels("unix:uid:3"), X509SVIDTTL: -1},
			target: datastore.ErrInvalidArgument,
			msg:    "X509SvidTtl is not set",
		},
		{
			name:   "fail/store SVID with mixed selector types",
			entry:  &datastore.Entry{SPIFFEID: td + "/x", ParentID: td + "/node", Selectors: sels("unix:uid:3", "k8s:ns:a"), StoreSVID: true},
			target: datastore.ErrInvalidArgument,
			msg:    "selector types must be the same",
		},
		{
			name: "fail/unknown federated bundle",
			entry: &datastore.Entry{SPIFFEID: td + "/x", ParentID: td + "/node", Selectors: sels("unix:uid:3"),
				FederatesWith: []string{"spiffe://fed-a.org", "spiffe://nosuch.example"}},
			target: datastore.ErrFailedPrecondition,
			msg:    `unable to find federated bundle "spiffe://nosuch.example"`,
		},
		{
			name:   "fail/nil entry",
			target: datastore.ErrInvalidArgument,
			msg:    "missing registered entry",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, s)
			got, err := s.CreateEntry(ctx, tt.entry)
			requireError(t, err, tt.target, tt.msg)
			if got != nil {
				t.Fatalf("expected no entry, got %+v", got)
			}
			requireUnchanged(t, s, before)
		})
	}

	t.Run("fail/similar entry reports the existing one", func(t *testing.T) {
		_, err := s.CreateEntry(ctx, &datastore.Entry{SPIFFEID: td + "/existing", ParentID: td + "/node", Selectors: sels("k8s:ns:a", "unix:uid:1")})
		var se *datastore.SimilarEntryError
		if !errors.As(err, &se) {
			t.Fatalf("expected *SimilarEntryError, got %v", err)
		}
		requireEqual(t, se.Existing, existing, "existing entry")
		var mb *datastore.MissingBundleError
		_, err = s.CreateEntry(ctx, &datastore.Entry{SPIFFEID: td + "/x", ParentID: td + "/node", Selectors: sels("unix:uid:3"),
			FederatesWith: []string{"spiffe://nosuch.example"}})
		if !errors.As(err, &mb) || mb.TrustDomain != "spiffe://nosuch.example" {
			t.Fatalf("expected *MissingBundleError, got %v", err)
		}
	})

	t.Run("fail/fetch unknown", func(t *testing.T) {
		_, err := s.FetchEntry(ctx, "nosuch")
		requireError(t, err, datastore.ErrNotFound, `entry "nosuch" not found`)
	})

	t.Run("ok/fetch entries", func(t *testing.T) {
		got, err := s.FetchEntries(ctx, []string{"existing-id", "nosuch", "existing-id"})
		requireNoError(t, err)
		requireEqual(t, got, map[string]*datastore.Entry{"existing-id": existing}, "fetched entries")
		got, err = s.FetchEntries(ctx, nil)
		requireNoError(t, err)
		requireEqual(t, len(got), 0, "fetched nothing")
	})

	testEntryUpdate(t, s)
	testEntryDelete(t, s)
}

func testEntryUpdate(t *testing.T, s *datastore.Store) {
	ctx := t.Context()
	base := func(t *testing.T) *datastore.Entry {
		return createEntry(t, s, &datastore.Entry{
			SPIFFEID: td + "/upd", ParentID: td + "/node", Selectors: sels("unix:uid:" + t.Name()),
			X509SVIDTTL: 10, JWTSVIDTTL: 20, DNSNames: []string{"d1"}, FederatesWith: []string{"spiffe://fed-a.org"},
			ExpiresAt: 100, Hint: "h",
		})
	}
	repl := &datastore.Entry{
		SPIFFEID: td + "/upd2", ParentID: td + "/node2", Selectors: sels("k8s:sa:x", "k8s:ns:y"),
		X509SVIDTTL: 11, JWTSVIDTTL: 21, DNSNames: []string{"d2", "d3"}, FederatesWith: []string{"spiffe://fed-b.org"},
		Admin: true, Downstream: true, ExpiresAt: 200, StoreSVID: true, Hint: "h2",
	}
	for _, tt := range []struct {
		name  string
		mask  *datastore.EntryMask
		apply func(e *datastore.Entry)
	}{
		{"ok/nil mask replaces all", nil, func(e *datastore.Entry) {
			id, created, rev := e.ID, e.CreatedAt, e.RevisionNumber
			*e = *repl
			e.Selectors = sels("k8s:ns:y", "k8s:sa:x")
			e.ID, e.CreatedAt, e.RevisionNumber = id, created, rev
		}},
		{"ok/mask SPIFFE ID", &datastore.EntryMask{SPIFFEID: true}, func(e *datastore.Entry) { e.SPIFFEID = repl.SPIFFEID }},
		{"ok/mask parent ID", &datastore.EntryMask{ParentID: true}, func(e *datastore.Entry) { e.ParentID = repl.ParentID }},
		{"ok/mask selectors", &datastore.EntryMask{Selectors: true}, func(e *datastore.Entry) { e.Selectors = sels("k8s:ns:y", "k8s:sa:x") }},
		{"ok/mask X509 TTL", &datastore.EntryMask{X509SVIDTTL: true}, func(e *datastore.Entry) { e.X509SVIDTTL = 11 }},
		{"ok/mask JWT TTL", &datastore.EntryMask{JWTSVIDTTL: true}, func(e *datastore.Entry) { e.JWTSVIDTTL = 21 }},
		{"ok/mask DNS names", &datastore.EntryMask{DNSNames: true}, func(e *datastore.Entry) { e.DNSNames = []string{"d2", "d3"} }},
		{"ok/mask federates with", &datastore.EntryMask{FederatesWith: true}, func(e *datastore.Entry) { e.FederatesWith = []string{"spiffe://fed-b.org"} }},
		{"ok/mask admin", &datastore.EntryMask{Admin: true}, func(e *datastore.Entry) { e.Admin = true }},
		{"ok/mask downstream", &datastore.EntryMask{Downstream: true}, func(e *datastore.Entry) { e.Downstream = true }},
		{"ok/mask expires at", &datastore.EntryMask{ExpiresAt: true}, func(e *datastore.Entry) { e.ExpiresAt = 200 }},
		{"ok/mask store SVID", &datastore.EntryMask{StoreSVID: true}, func(e *datastore.Entry) { e.StoreSVID = true }},
		{"ok/mask hint", &datastore.EntryMask{Hint: true}, func(e *datastore.Entry) { e.Hint = "h2" }},
		{"ok/empty mask only bumps the revision", &datastore.EntryMask{}, func(*datastore.Entry) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := base(t)
			want := *e
			tt.apply(&want)
			want.RevisionNumber = 1
			in := *repl
			in.ID = e.ID
			got, err := s.UpdateEntry(ctx, &in, tt.mask)
			requireNoError(t, err)
			requireEqual(t, got, &want, "updated entry")
			fetched, err := s.FetchEntry(ctx, e.ID)
			requireNoError(t, err)
			requireEqual(t, fetched, &want, "fetched entry")
			requireNoError(t, func() error { _, err := s.DeleteEntry(ctx, e.ID); return err }())
		})
	}

	t.Run("ok/revision bumps on every update", func(t *testing.T) {
		e := base(t)
		for i := range 3 {
			e.Hint = fmt.Sprintf("h%d", i)
			got, err := s.UpdateEntry(ctx, e, &datastore.EntryMask{Hint: true})
			requireNoError(t, err)
			requireEqual(t, got.RevisionNumber, int64(i+1), "revision")
		}
	})

	t.Run("ok/selector index follows updates", func(t *testing.T) {
		e := base(t)
		e.Selectors = sels("upd:new")
		_, err := s.UpdateEntry(ctx, e, &datastore.EntryMask{Selectors: true})
		requireNoError(t, err)
		got, _, err := s.ListEntries(ctx, &datastore.ListEntriesRequest{BySelectors: &datastore.BySelectors{Selectors: sels("upd:new"), Match: datastore.MatchExact}})
		requireNoError(t, err)
		requireEqual(t, entryIDs(got), []string{e.ID}, "entries by new selector")
		n, err := s.CountEntries(ctx, &datastore.ListEntriesRequest{BySelectors: &datastore.BySelectors{Selectors: sels("unix:uid:" + t.Name()), Match: datastore.MatchAny}})
		requireNoError(t, err)
		requireEqual(t, n, int32(0), "entries by old selector")
	})

	for _, tt := range []struct {
		name   string
		entry  func(e *datastore.Entry) *datastore.Entry
		mask   *datastore.EntryMask
		target error
		msg    string
	}{
		{"fail/unknown entry", func(e *datastore.Entry) *datastore.Entry { e.ID = "nosuch"; return e }, nil,
			datastore.ErrNotFound, `entry "nosuch" not found`},
		{"fail/no selectors", func(e *datastore.Entry) *datastore.Entry { e.Selectors = nil; return e }, &datastore.EntryMask{Selectors: true},
			datastore.ErrInvalidArgument, "missing selector list"},
		{"fail/unknown federated bundle", func(e *datastore.Entry) *datastore.Entry {
			e.FederatesWith = []string{"spiffe://nosuch.example"}
			return e
		}, &datastore.EntryMask{FederatesWith: true}, datastore.ErrFailedPrecondition, "unable to find federated bundle"},
		{"fail/nil entry", func(*datastore.Entry) *datastore.Entry { return nil }, nil, datastore.ErrInvalidArgument, "missing registered entry"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := base(t)
			before := snapshot(t, s)
			_, err := s.UpdateEntry(ctx, tt.entry(e), tt.mask)
			requireError(t, err, tt.target, tt.msg)
			requireUnchanged(t, s, before)
		})
	}
}

func testEntryDelete(t *testing.T, s *datastore.Store) {
	ctx := t.Context()
	t.Run("ok/delete", func(t *testing.T) {
		e := createEntry(t, s, entry("/del", "/node", "del:1", "del:2"))
		got, err := s.DeleteEntry(ctx, e.ID)
		requireNoError(t, err)
		requireEqual(t, got, e, "deleted entry")
		_, err = s.FetchEntry(ctx, e.ID)
		requireError(t, err, datastore.ErrNotFound, "not found")
		n, err := s.CountEntries(ctx, &datastore.ListEntriesRequest{BySelectors: &datastore.BySelectors{Selectors: sels("del:1"), Match: datastore.MatchAny}})
		requireNoError(t, err)
		requireEqual(t, n, int32(0), "entries by selector after delete")
		// The similar entry can be created again.
		createEntry(t, s, entry("/del", "/node", "del:1", "del:2"))
	})
	t.Run("fail/delete unknown", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.DeleteEntry(ctx, "nosuch")
		requireError(t, err, datastore.ErrNotFound, `entry "nosuch" not found`)
		requireUnchanged(t, s, before)
	})
	t.Run("ok/prune expired", func(t *testing.T) {
		keep := createEntry(t, s, &datastore.Entry{SPIFFEID: td + "/p", ParentID: td + "/node", Selectors: sels("prune:1"), ExpiresAt: 1000})
		never := createEntry(t, s, &datastore.Entry{SPIFFEID: td + "/p", ParentID: td + "/node", Selectors: sels("prune:2")})
		gone := createEntry(t, s, &datastore.Entry{SPIFFEID: td + "/p", ParentID: td + "/node", Selectors: sels("prune:3"), ExpiresAt: 999})
		requireNoError(t, s.PruneEntries(ctx, 1000))
		got, err := s.FetchEntries(ctx, []string{keep.ID, never.ID, gone.ID})
		requireNoError(t, err)
		requireEqual(t, sorted(mapKeys(got)), sorted([]string{keep.ID, never.ID}), "entries left")
	})
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func testEntryFilters(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	createBundle(t, s, "spiffe://a.org", "a")
	createBundle(t, s, "spiffe://b.org", "b")
	createBundle(t, s, "spiffe://c.org", "c")

	mk := func(id, path, parent string, fed []string, downstream bool, hint string, selectors ...string) {
		e := entry(path, parent, selectors...)
		e.ID, e.FederatesWith, e.Downstream, e.Hint = id, fed, downstream, hint
		createEntry(t, s, e)
	}
	mk("e-a", "/a", "/node1", nil, false, "", "t:1")
	mk("e-ab", "/ab", "/node1", []string{"spiffe://a.org"}, false, "h1", "t:1", "t:2")
	mk("e-abc", "/abc", "/node2", []string{"spiffe://a.org", "spiffe://b.org"}, true, "h1", "t:1", "t:2", "t:3")
	mk("e-b", "/b", "/node2", []string{"spiffe://b.org"}, false, "h2", "t:2")
	mk("e-c", "/c", "/node1", []string{"spiffe://a.org", "spiffe://b.org", "spiffe://c.org"}, true, "", "t:3")
	mk("e-x", "/a", "/node3", nil, false, "", "u:1", "t:1")

	bySel := func(m datastore.MatchBehavior, ss ...string) *datastore.BySelectors {
		return &datastore.BySelectors{Selectors: sels(ss...), Match: m}
	}
	byFed := func(m datastore.MatchBehavior, tds ...string) *datastore.ByFederatesWith {
		return &datastore.ByFederatesWith{TrustDomains: tds, Match: m}
	}
	yes, no := true, false
	for _, tt := range []struct {
		name string
		req  datastore.ListEntriesRequest
		want []string
	}{
		{"ok/no filter", datastore.ListEntriesRequest{}, []string{"e-a", "e-ab", "e-abc", "e-b", "e-c", "e-x"}},
		{"ok/by SPIFFE ID", datastore.ListEntriesRequest{BySPIFFEID: td + "/a"}, []string{"e-a", "e-x"}},
		{"ok/by parent ID", datastore.ListEntriesRequest{ByParentID: td + "/node2"}, []string{"e-abc", "e-b"}},
		{"ok/by SPIFFE ID and parent ID", datastore.ListEntriesRequest{BySPIFFEID: td + "/a", ByParentID: td + "/node3"}, []string{"e-x"}},
		{"ok/by hint", datastore.ListEntriesRequest{ByHint: "h1"}, []string{"e-ab", "e-abc"}},
		{"ok/by downstream true", datastore.ListEntriesRequest{ByDownstream: &yes}, []string{"e-abc", "e-c"}},
		{"ok/by downstream false", datastore.ListEntriesRequest{ByDownstream: &no}, []string{"e-a", "e-ab", "e-b", "e-x"}},
		{"ok/no match", datastore.ListEntriesRequest{BySPIFFEID: td + "/nosuch"}, []string{}},

		{"ok/selectors exact", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchExact, "t:1", "t:2")}, []string{"e-ab"}},
		{"ok/selectors exact single", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchExact, "t:1")}, []string{"e-a"}},
		{"ok/selectors exact with duplicates", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchExact, "t:2", "t:1", "t:2")}, []string{"e-ab"}},
		{"ok/selectors exact none", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchExact, "t:1", "t:3")}, []string{}},
		{"ok/selectors subset", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchSubset, "t:1", "t:2")}, []string{"e-a", "e-ab", "e-b"}},
		{"ok/selectors subset single", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchSubset, "t:3")}, []string{"e-c"}},
		{"ok/selectors subset unknown", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchSubset, "z:9")}, []string{}},
		{"ok/selectors superset", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchSuperset, "t:1", "t:2")}, []string{"e-ab", "e-abc"}},
		{"ok/selectors superset single", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchSuperset, "t:1")}, []string{"e-a", "e-ab", "e-abc", "e-x"}},
		{"ok/selectors any", datastore.ListEntriesRequest{BySelectors: bySel(datastore.MatchAny, "t:3", "u:1")}, []string{"e-abc", "e-c", "e-x"}},
		{"ok/selectors any and parent", datastore.ListEntriesRequest{ByParentID: td + "/node1", BySelectors: bySel(datastore.MatchAny, "t:3", "u:1")}, []string{"e-c"}},

		{"ok/federates exact", datastore.ListEntriesRequest{ByFederatesWith: byFed(datastore.MatchExact, "spiffe://b.org", "spiffe://a.org")}, []string{"e-abc"}},
		{"ok/federates exact single", datastore.ListEntriesRequest{ByFederatesWith: byFed(datastore.MatchExact, "spiffe://b.org")}, []string{"e-b"}},
		{"ok/federates subset", datastore.ListEntriesRequest{ByFederatesWith: byFed(datastore.MatchSubset, "spiffe://a.org", "spiffe://b.org")}, []string{"e-ab", "e-abc", "e-b"}},
		{"ok/federates superset", datastore.ListEntriesRequest{ByFederatesWith: byFed(datastore.MatchSuperset, "spiffe://a.org", "spiffe://b.org")}, []string{"e-abc", "e-c"}},
		{"ok/federates any", datastore.ListEntriesRequest{ByFederatesWith: byFed(datastore.MatchAny, "spiffe://c.org", "spiffe://b.org")}, []string{"e-abc", "e-b", "e-c"}},
		{"ok/federates any unknown", datastore.ListEntriesRequest{ByFederatesWith: byFed(datastore.MatchAny, "spiffe://nosuch.org")}, []string{}},
		{"ok/federates empty set is no filter", datastore.ListEntriesRequest{ByFederatesWith: byFed(datastore.MatchExact)}, []string{"e-a", "e-ab", "e-abc", "e-b", "e-c", "e-x"}},

		{"ok/all filters", datastore.ListEntriesRequest{
			ByParentID: td + "/node2", ByHint: "h1", ByDownstream: &yes,
			BySelectors:     bySel(datastore.MatchSuperset, "t:3"),
			ByFederatesWith: byFed(datastore.MatchSuperset, "spiffe://b.org"),
		}, []string{"e-abc"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			got, token, err := s.ListEntries(ctx, &req)
			requireNoError(t, err)
			requireEqual(t, token, "", "token")
			requireEqual(t, entryIDs(got), tt.want, "entries")
			n, err := s.CountEntries(ctx, &req)
			requireNoError(t, err)
			requireEqual(t, n, int32(len(tt.want)), "count")
			// The same filter paged by one entry gives the same entries.
			req.Pagination = &datastore.Pagination{PageSize: 1}
			var paged []*datastore.Entry
			for {
				page, token, err := s.ListEntries(ctx, &req)
				requireNoError(t, err)
				paged = append(paged, page...)
				if token == "" {
					break
				}
			}
			requireEqual(t, entryIDs(paged), tt.want, "paged entries")
		})
	}

	for _, tt := range []struct {
		name   string
		req    datastore.ListEntriesRequest
		target error
		msg    string
	}{
		{"fail/empty selector set", datastore.ListEntriesRequest{BySelectors: &datastore.BySelectors{Match: datastore.MatchAny}},
			datastore.ErrInvalidArgument, "cannot list by empty selector set"},
		{"fail/unknown selector match", datastore.ListEntriesRequest{BySelectors: bySel(7, "t:1")},
			datastore.ErrInvalidArgument, "unhandled match behavior 7"},
		{"fail/unknown federates match", datastore.ListEntriesRequest{ByFederatesWith: byFed(9, "spiffe://a.org")},
			datastore.ErrInvalidArgument, "unhandled match behavior 9"},
		{"fail/malformed token", datastore.ListEntriesRequest{Pagination: &datastore.Pagination{Token: "abc", PageSize: 2}},
			datastore.ErrInvalidArgument, `could not parse token "abc"`},
		{"fail/negative token", datastore.ListEntriesRequest{Pagination: &datastore.Pagination{Token: "-1", PageSize: 2}},
			datastore.ErrInvalidArgument, "could not parse token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			_, _, err := s.ListEntries(ctx, &req)
			requireError(t, err, tt.target, tt.msg)
			if req.Pagination == nil {
				_, err = s.CountEntries(ctx, &req)
				requireError(t, err, tt.target, tt.msg)
			}
		})
	}
}

func testEntryPagination(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	var want []string
	for i := range 25 {
		e := createEntry(t, s, entry(fmt.Sprintf("/w%d", i), "/node", fmt.Sprintf("unix:uid:%d", i), "page:all"))
		want = append(want, e.ID)
	}
	t.Run("ok/pages", func(t *testing.T) {
		req := &datastore.ListEntriesRequest{Pagination: &datastore.Pagination{PageSize: 10}}
		var got []string
		var sizes []int
		for {
			page, token, err := s.ListEntries(ctx, req)
			requireNoError(t, err)
			requireEqual(t, req.Pagination.Token, token, "token stored in the request")
			got = append(got, entryIDs(page)...)
			sizes = append(sizes, len(page))
			if token == "" {
				break
			}
		}
		requireEqual(t, sizes, []int{10, 10, 5}, "page sizes")
		requireEqual(t, got, want, "entries in creation order")
	})
	t.Run("ok/exact multiple of the page size", func(t *testing.T) {
		req := &datastore.ListEntriesRequest{Pagination: &datastore.Pagination{PageSize: 5}}
		pages := 0
		for {
			_, token, err := s.ListEntries(ctx, req)
			requireNoError(t, err)
			pages++
			if token == "" {
				break
			}
		}
		requireEqual(t, pages, 5, "pages (no empty trailing page)")
	})
	t.Run("ok/page size 0 lists all", func(t *testing.T) {
		got, token, err := s.ListEntries(ctx, &datastore.ListEntriesRequest{Pagination: &datastore.Pagination{}})
		requireNoError(t, err)
		requireEqual(t, token, "", "token")
		requireEqual(t, len(got), 25, "entries")
	})
	t.Run("ok/filtered pages", func(t *testing.T) {
		req := &datastore.ListEntriesRequest{
			BySelectors: &datastore.BySelectors{Selectors: sels("page:all"), Match: datastore.MatchSuperset},
			Pagination:  &datastore.Pagination{PageSize: 7},
		}
		var got []string
		for {
			page, token, err := s.ListEntries(ctx, req)
			requireNoError(t, err)
			got = append(got, entryIDs(page)...)
			if token == "" {
				break
			}
		}
		requireEqual(t, got, want, "filtered entries")
	})
}

func testCreateEntries(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	createBundle(t, s, "spiffe://fed.org", "f")
	taken := createEntry(t, s, &datastore.Entry{ID: "taken", SPIFFEID: td + "/taken", ParentID: td + "/node", Selectors: sels("b:0")})

	t.Run("ok/mixed batch", func(t *testing.T) {
		batch := []*datastore.Entry{
			entry("/w1", "/node", "b:1"),
			{ID: "taken", SPIFFEID: td + "/w2", ParentID: td + "/node", Selectors: sels("b:2")},
			entry("/w3", "/node", "b:3"),
			entry("/w1", "/node", "b:1"), // similar to the first of this batch
			{SPIFFEID: td + "/w5", ParentID: td + "/node"},
			{SPIFFEID: td + "/w6", ParentID: td + "/node", Selectors: sels("b:6"), FederatesWith: []string{"spiffe://nosuch.org"}},
			{SPIFFEID: td + "/w7", ParentID: td + "/node", Selectors: sels("b:7"), FederatesWith: []string{"spiffe://fed.org"}},
			nil,
		}
		seq0, err := s.LatestChangeSeq(ctx)
		requireNoError(t, err)
		got, errs, err := s.CreateEntries(ctx, batch)
		requireNoError(t, err)
		requireEqual(t, len(got), len(batch), "results")
		requireEqual(t, len(errs), len(batch), "errors")
		wantErr := []struct {
			target error
			msg    string
		}{
			{nil, ""},
			{datastore.ErrAlreadyExists, `entry "taken" already exists`},
			{nil, ""},
			{datastore.ErrAlreadyExists, "similar entry already exists"},
			{datastore.ErrInvalidArgument, "missing selector list"},
			{datastore.ErrFailedPrecondition, "unable to find federated bundle"},
			{nil, ""},
			{datastore.ErrInvalidArgument, "missing registered entry"},
		}
		var created []string
		for i, w := range wantErr {
			if w.target == nil {
				requireNoError(t, errs[i])
				if got[i] == nil || got[i].ID == "" {
					t.Fatalf("item %d: no entry", i)
				}
				fetched, err := s.FetchEntry(ctx, got[i].ID)
				requireNoError(t, err)
				requireEqual(t, fetched, got[i], fmt.Sprintf("item %d", i))
				created = append(created, got[i].ID)
				continue
			}
			requireError(t, errs[i], w.target, w.msg)
			if got[i] != nil {
				t.Fatalf("item %d: entry returned with an error", i)
			}
		}
		var se *datastore.SimilarEntryError
		if !errors.As(errs[3], &se) || se.Existing.ID != got[0].ID {
			t.Fatalf("item 3: expected a similar-entry error naming item 0, got %v", errs[3])
		}
		fetched, err := s.FetchEntry(ctx, "taken")
		requireNoError(t, err)
		requireEqual(t, fetched, taken, "existing entry untouched")
		changes, err := s.ListChanges(ctx, seq0, 0)
		requireNoError(t, err)
		var changed []string
		for _, c := range changes {
			requireEqual(t, c.Kind, datastore.ChangeEntry, "change kind")
			requireEqual(t, c.Op, datastore.OpCreate, "change op")
			changed = append(changed, c.ID)
		}
		requireEqual(t, changed, created, "one change per created entry, in order")
	})

	t.Run("ok/empty batch", func(t *testing.T) {
		got, errs, err := s.CreateEntries(ctx, nil)
		requireNoError(t, err)
		requireEqual(t, len(got)+len(errs), 0, "results")
	})
}
