package entry_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/api/entry"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	ctx = context.Background()

	_ entry.Store        = (*datastore.Store)(nil)
	_ entry.BatchCreator = (*datastore.Store)(nil)
)

type fixture struct {
	store   *datastore.Store
	client  entryv1.EntryClient
	srv     *apitest.Server
	changed int
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: datastoretest.OpenSQLite(t)}
	svc, err := entry.New(entry.Config{TrustDomain: td, Store: f.store, Changed: func() { f.changed++ }})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = apitest.Serve(t, svc)
	f.client = entryv1.NewEntryClient(f.srv.Conn)
	return f
}

func id(path string) *types.SPIFFEID { return &types.SPIFFEID{TrustDomain: "example.org", Path: path} }

func newEntry(n int) *types.Entry {
	return &types.Entry{
		SpiffeId:  id(fmt.Sprintf("/workload/%d", n)),
		ParentId:  id("/spire/agent/join_token/node"),
		Selectors: []*types.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", n)}},
	}
}

func (f *fixture) create(t *testing.T, es ...*types.Entry) []*types.Entry {
	t.Helper()
	resp, err := f.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: es})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*types.Entry, 0, len(es))
	for i, r := range resp.Results {
		if r.Status.Code != 0 {
			t.Fatalf("create %d: %v", i, r.Status)
		}
		out = append(out, r.Entry)
	}
	return out
}

// snapshot is every stored entry, for "nothing changed" checks (X7).
func (f *fixture) snapshot(t *testing.T) []*datastore.Entry {
	t.Helper()
	es, _, err := f.store.ListEntries(ctx, &datastore.ListEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func sameEntries(t *testing.T, before, after []*datastore.Entry) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("entries changed: %d before, %d after", len(before), len(after))
	}
	for i := range before {
		if fmt.Sprint(*before[i]) != fmt.Sprint(*after[i]) {
			t.Fatalf("entry changed:\n%+v\n%+v", *before[i], *after[i])
		}
	}
}

func fullEntry() *types.Entry {
	return &types.Entry{
		Id:            "custom-entry-0001",
		SpiffeId:      id("/workload/full"),
		ParentId:      id("/spire/agent/join_token/node"),
		Selectors:     []*types.Selector{{Type: "unix", Value: "gid:1"}, {Type: "unix", Value: "uid:1"}},
		X509SvidTtl:   3600,
		JwtSvidTtl:    600,
		FederatesWith: []string{"partner.example"},
		Admin:         true,
		Downstream:    true,
		ExpiresAt:     1893456000,
		DnsNames:      []string{"b.example.org", "a.example.org"},
		StoreSvid:     true,
		Hint:          "primary",
	}
}

func (f *fixture) addPartnerBundle(t *testing.T) {
	t.Helper()
	if _, err := f.store.SetBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://partner.example"}); err != nil {
		t.Fatal(err)
	}
}

func TestBatchCreateEntry(t *testing.T) {
	for _, tt := range []struct {
		name    string
		setup   func(*testing.T, *fixture)
		entry   func() *types.Entry
		code    codes.Code
		msg     string
		created bool
	}{
		{name: "ok/plain", entry: func() *types.Entry { return newEntry(1) }, created: true},
		{name: "ok/node entry parented to the server", entry: func() *types.Entry {
			e := newEntry(1)
			e.SpiffeId = id("/node/group")
			e.ParentId = id("/spire/server")
			e.Selectors = []*types.Selector{{Type: "join_token", Value: "x"}}
			return e
		}, created: true},
		{name: "ok/every field", setup: func(t *testing.T, f *fixture) { f.addPartnerBundle(t) }, entry: fullEntry, created: true},
		{name: "fail/malformed SPIFFE ID", entry: func() *types.Entry { e := newEntry(1); e.SpiffeId.Path = "/a//b"; return e },
			code: codes.InvalidArgument, msg: "failed to convert entry: invalid spiffe ID: path cannot contain empty segments"},
		{name: "fail/upper case trust domain", entry: func() *types.Entry { e := newEntry(1); e.SpiffeId.TrustDomain = "Example.org"; return e },
			code: codes.InvalidArgument, msg: "failed to convert entry: invalid spiffe ID: trust domain characters are limited"},
		{name: "fail/selector without type:value", entry: func() *types.Entry {
			e := newEntry(1)
			e.Selectors = []*types.Selector{{Type: "unixuid0"}}
			return e
		}, code: codes.InvalidArgument, msg: "failed to convert entry: missing selector value"},
		{name: "fail/parent in another trust domain", entry: func() *types.Entry {
			e := newEntry(1)
			e.ParentId = &types.SPIFFEID{TrustDomain: "other.example", Path: "/node/agent"}
			return e
		}, code: codes.InvalidArgument, msg: `failed to convert entry: invalid parent ID: "spiffe://other.example/node/agent" is not a member of trust domain "example.org"`},
		{name: "fail/SPIFFE ID in another trust domain", entry: func() *types.Entry {
			e := newEntry(1)
			e.SpiffeId = &types.SPIFFEID{TrustDomain: "other.example", Path: "/workload/x"}
			return e
		}, code: codes.InvalidArgument, msg: `failed to convert entry: invalid spiffe ID: "spiffe://other.example/workload/x" is not a member of trust domain "example.org"`},
		{name: "fail/negative X509-SVID TTL", entry: func() *types.Entry { e := newEntry(1); e.X509SvidTtl = -1; return e },
			code: codes.InvalidArgument, msg: "failed to create entry: datastore-validation: invalid registration entry: X509SvidTtl is not set"},
		{name: "fail/negative JWT-SVID TTL", entry: func() *types.Entry { e := newEntry(1); e.JwtSvidTtl = -5; return e },
			code: codes.InvalidArgument, msg: "failed to create entry: datastore-validation: invalid registration entry: JwtSvidTtl is not set"},
		{name: "fail/entry ID with bad characters", entry: func() *types.Entry { e := newEntry(1); e.Id = "a/b"; return e },
			code: codes.InvalidArgument, msg: "failed to create entry: datastore-validation: invalid registration entry: entry ID contains invalid characters"},
		{name: "fail/store SVID with mixed selector types", entry: func() *types.Entry {
			e := newEntry(1)
			e.StoreSvid = true
			e.Selectors = append(e.Selectors, &types.Selector{Type: "aws", Value: "secret:x"})
			return e
		}, code: codes.InvalidArgument, msg: "failed to create entry: datastore-validation: invalid registration entry: selector types must be the same when store SVID is enabled"},
		{name: "fail/duplicate", setup: func(t *testing.T, f *fixture) { f.create(t, newEntry(1)) }, entry: func() *types.Entry { return newEntry(1) },
			code: codes.AlreadyExists, msg: "similar entry already exists"},
		{name: "fail/duplicate custom ID", setup: func(t *testing.T, f *fixture) {
			e := newEntry(2)
			e.Id = "custom-entry-0001"
			f.create(t, e)
		}, entry: func() *types.Entry { e := newEntry(1); e.Id = "custom-entry-0001"; return e },
			code: codes.AlreadyExists, msg: "failed to create entry: "},
		{name: "fail/unknown federated trust domain", entry: func() *types.Entry {
			e := newEntry(1)
			e.FederatesWith = []string{"spiffe://nosuch.example"}
			return e
		}, code: codes.Internal, msg: `failed to create entry: unable to find federated bundle "spiffe://nosuch.example"`},
		{name: "fail/hint too long", entry: func() *types.Entry { e := newEntry(1); e.Hint = strings.Repeat("h", 1025); return e },
			code: codes.InvalidArgument, msg: "failed to convert entry: hint is too long, max length is 1024 characters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			before := f.snapshot(t)
			in := tt.entry()
			resp, err := f.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{in}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Results) != 1 {
				t.Fatalf("%d results", len(resp.Results))
			}
			r := resp.Results[0]
			if codes.Code(r.Status.Code) != tt.code || !strings.HasPrefix(r.Status.Message, tt.msg) {
				t.Fatalf("status = %v %q, want %v %q", codes.Code(r.Status.Code), r.Status.Message, tt.code, tt.msg)
			}
			if strings.Contains(strings.ToLower(r.Status.Message), "sql") || strings.Contains(r.Status.Message, "constraint") {
				t.Fatalf("store text leaked: %q", r.Status.Message)
			}
			if !tt.created {
				if tt.code == codes.AlreadyExists && tt.msg == "similar entry already exists" {
					if r.Entry == nil || r.Entry.Id == "" {
						t.Fatal("similar entry: the existing entry is not returned")
					}
				}
				sameEntries(t, before, f.snapshot(t))
				if tt.code == codes.InvalidArgument && !f.srv.Logs.Contains("Invalid argument") {
					t.Fatalf("refusal not logged: %s", f.srv.Logs.String())
				}
				return
			}
			if r.Status.Message != "OK" || r.Entry.Id == "" || r.Entry.CreatedAt == 0 {
				t.Fatalf("result %v", r)
			}
			got, err := f.client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: r.Entry.Id})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, r.Entry) {
				t.Fatalf("GetEntry %v\nwant %v", got, r.Entry)
			}
			want := proto.Clone(in).(*types.Entry)
			want.Id, want.CreatedAt = got.Id, got.CreatedAt
			// The store sorts selectors and federated trust domains; DNS names keep their order.
			if !proto.Equal(normalize(want), normalize(got)) {
				t.Fatalf("stored entry lost fields:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func normalize(e *types.Entry) *types.Entry {
	e = proto.Clone(e).(*types.Entry)
	for i := range e.FederatesWith {
		e.FederatesWith[i] = strings.TrimPrefix(e.FederatesWith[i], "spiffe://")
	}
	sortSelectors(e.Selectors)
	return e
}

func sortSelectors(s []*types.Selector) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j].Type < s[i].Type || s[j].Type == s[i].Type && s[j].Value < s[i].Value {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

func TestBatchCreateEntry_MixedBatch(t *testing.T) {
	f := setup(t)
	f.create(t, newEntry(1))
	bad := newEntry(3)
	bad.ParentId = &types.SPIFFEID{TrustDomain: "other.example", Path: "/node/agent"}
	resp, err := f.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{
		Entries:    []*types.Entry{newEntry(1), newEntry(2), bad, newEntry(2)},
		OutputMask: &types.EntryMask{SpiffeId: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.AlreadyExists, codes.OK, codes.InvalidArgument, codes.AlreadyExists}
	for i, r := range resp.Results {
		if codes.Code(r.Status.Code) != want[i] {
			t.Errorf("result %d: %v, want %v", i, r.Status, want[i])
		}
	}
	ok := resp.Results[1].Entry
	if ok.SpiffeId.Path != "/workload/2" || ok.ParentId != nil || ok.Selectors != nil || ok.Id == "" {
		t.Fatalf("output mask not applied: %v", ok)
	}
	if n := len(f.snapshot(t)); n != 2 {
		t.Fatalf("%d entries stored, want 2", n)
	}
	if f.changed == 0 {
		t.Fatal("index not poked after a create")
	}
}

func TestGetEntry(t *testing.T) {
	f := setup(t)
	e := f.create(t, newEntry(1))[0]
	for _, tt := range []struct {
		name string
		req  *entryv1.GetEntryRequest
		code codes.Code
		msg  string
	}{
		{name: "ok/found", req: &entryv1.GetEntryRequest{Id: e.Id}},
		{name: "ok/output mask", req: &entryv1.GetEntryRequest{Id: e.Id, OutputMask: &types.EntryMask{}}},
		{name: "fail/unknown entry ID", req: &entryv1.GetEntryRequest{Id: "no-such-entry"}, code: codes.NotFound, msg: "entry not found"},
		{name: "fail/missing ID", req: &entryv1.GetEntryRequest{}, code: codes.InvalidArgument, msg: "missing ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.client.GetEntry(ctx, tt.req)
			if status.Code(err) != tt.code || (tt.code != codes.OK && status.Convert(err).Message() != tt.msg) {
				t.Fatalf("err = %v, want %v %q", err, tt.code, tt.msg)
			}
			if tt.code == codes.OK && got.Id != e.Id {
				t.Fatalf("got %v", got)
			}
			if tt.req.OutputMask != nil && (got.SpiffeId != nil || got.Selectors != nil) {
				t.Fatalf("mask not applied: %v", got)
			}
		})
	}
}

func TestBatchUpdateEntry(t *testing.T) {
	for _, tt := range []struct {
		name  string
		edit  func(*types.Entry)
		mask  *types.EntryMask
		code  codes.Code
		msg   string
		check func(*testing.T, *types.Entry)
	}{
		{name: "ok/replace everything", edit: func(e *types.Entry) { e.SpiffeId = id("/workload/renamed"); e.X509SvidTtl = 60 },
			check: func(t *testing.T, e *types.Entry) {
				if e.SpiffeId.Path != "/workload/renamed" || e.X509SvidTtl != 60 || e.RevisionNumber != 1 {
					t.Fatalf("got %v", e)
				}
			}},
		{name: "ok/input mask changes only the hint", edit: func(e *types.Entry) { e.Hint = "h"; e.SpiffeId = nil; e.Selectors = nil },
			mask: &types.EntryMask{Hint: true},
			check: func(t *testing.T, e *types.Entry) {
				if e.Hint != "h" || e.SpiffeId.Path != "/workload/1" || len(e.Selectors) != 1 || e.RevisionNumber != 1 {
					t.Fatalf("got %v", e)
				}
			}},
		{name: "fail/unknown entry ID", edit: func(e *types.Entry) { e.Id = "no-such-entry" }, code: codes.NotFound, msg: "failed to update entry"},
		{name: "fail/parent in another trust domain", edit: func(e *types.Entry) { e.ParentId.TrustDomain = "other.example" },
			code: codes.InvalidArgument, msg: "failed to convert entry: invalid parent ID: "},
		{name: "fail/negative TTL", edit: func(e *types.Entry) { e.JwtSvidTtl = -1 }, mask: &types.EntryMask{JwtSvidTtl: true},
			code: codes.InvalidArgument, msg: "failed to update entry: datastore-validation: invalid registration entry: JwtSvidTtl is not set"},
		{name: "fail/store SVID against stored mixed selectors", edit: func(e *types.Entry) { e.StoreSvid = true }, mask: &types.EntryMask{StoreSvid: true},
			code: codes.InvalidArgument, msg: "failed to update entry: datastore-validation: invalid registration entry: selector types must be the same when store SVID is enabled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			base := newEntry(1)
			if strings.Contains(tt.name, "mixed") {
				base.Selectors = append(base.Selectors, &types.Selector{Type: "k8s", Value: "ns:x"})
			}
			e := f.create(t, base)[0]
			before := f.snapshot(t)
			tt.edit(e)
			resp, err := f.client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{e}, InputMask: tt.mask})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.Results[0]
			if codes.Code(r.Status.Code) != tt.code || !strings.HasPrefix(r.Status.Message, tt.msg) {
				t.Fatalf("status = %v, want %v %q", r.Status, tt.code, tt.msg)
			}
			if tt.code != codes.OK {
				sameEntries(t, before, f.snapshot(t))
				return
			}
			tt.check(t, r.Entry)
		})
	}
}

func TestBatchDeleteEntry(t *testing.T) {
	f := setup(t)
	e := f.create(t, newEntry(1), newEntry(2))
	before := f.snapshot(t)
	resp, err := f.client.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: []string{"no-such-entry", ""}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results[0]; r.Id != "no-such-entry" || codes.Code(r.Status.Code) != codes.NotFound || r.Status.Message != "entry not found" {
		t.Fatalf("unknown: %v", r)
	}
	if r := resp.Results[1]; codes.Code(r.Status.Code) != codes.InvalidArgument || r.Status.Message != "missing entry ID" {
		t.Fatalf("empty: %v", r)
	}
	sameEntries(t, before, f.snapshot(t))

	resp, err = f.client.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: []string{e[0].Id}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results[0]; r.Id != e[0].Id || r.Status.Code != 0 || r.Status.Message != "OK" {
		t.Fatalf("delete: %v", r)
	}
	if n := len(f.snapshot(t)); n != 1 {
		t.Fatalf("%d entries left", n)
	}
}

func TestListEntries_Filters(t *testing.T) {
	f := setup(t)
	f.addPartnerBundle(t)
	a := newEntry(1)
	a.Selectors = []*types.Selector{{Type: "unix", Value: "uid:1"}, {Type: "unix", Value: "gid:1"}}
	a.Hint = "web"
	b := newEntry(2)
	b.ParentId = id("/node/other")
	b.Downstream = true
	b.FederatesWith = []string{"partner.example"}
	c := newEntry(3)
	c.Selectors = []*types.Selector{{Type: "unix", Value: "uid:1"}}
	f.create(t, a, b, c)

	sel := func(m types.SelectorMatch_MatchBehavior, s ...string) *types.SelectorMatch {
		out := &types.SelectorMatch{Match: m}
		for _, v := range s {
			ty, val, _ := strings.Cut(v, ":")
			out.Selectors = append(out.Selectors, &types.Selector{Type: ty, Value: val})
		}
		return out
	}
	for _, tt := range []struct {
		name   string
		filter *entryv1.ListEntriesRequest_Filter
		want   []string
		code   codes.Code
		msg    string
	}{
		{name: "ok/no filter", want: []string{"/workload/1", "/workload/2", "/workload/3"}},
		{name: "ok/by SPIFFE ID", filter: &entryv1.ListEntriesRequest_Filter{BySpiffeId: id("/workload/2")}, want: []string{"/workload/2"}},
		{name: "ok/by parent ID", filter: &entryv1.ListEntriesRequest_Filter{ByParentId: id("/node/other")}, want: []string{"/workload/2"}},
		{name: "ok/by selectors exact", filter: &entryv1.ListEntriesRequest_Filter{BySelectors: sel(types.SelectorMatch_MATCH_EXACT, "unix:uid:1")}, want: []string{"/workload/3"}},
		{name: "ok/by selectors superset", filter: &entryv1.ListEntriesRequest_Filter{BySelectors: sel(types.SelectorMatch_MATCH_SUPERSET, "unix:uid:1")}, want: []string{"/workload/1", "/workload/3"}},
		{name: "ok/by selectors subset", filter: &entryv1.ListEntriesRequest_Filter{BySelectors: sel(types.SelectorMatch_MATCH_SUBSET, "unix:uid:1", "unix:uid:2")}, want: []string{"/workload/2", "/workload/3"}},
		{name: "ok/by selectors any", filter: &entryv1.ListEntriesRequest_Filter{BySelectors: sel(types.SelectorMatch_MATCH_ANY, "unix:gid:1", "unix:uid:2")}, want: []string{"/workload/1", "/workload/2"}},
		{name: "ok/by federates with", filter: &entryv1.ListEntriesRequest_Filter{ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"partner.example"}, Match: types.FederatesWithMatch_MATCH_EXACT}}, want: []string{"/workload/2"}},
		{name: "ok/by hint", filter: &entryv1.ListEntriesRequest_Filter{ByHint: wrapperspb.String("web")}, want: []string{"/workload/1"}},
		{name: "ok/by downstream", filter: &entryv1.ListEntriesRequest_Filter{ByDownstream: wrapperspb.Bool(true)}, want: []string{"/workload/2"}},
		{name: "fail/malformed SPIFFE ID filter", filter: &entryv1.ListEntriesRequest_Filter{BySpiffeId: &types.SPIFFEID{TrustDomain: "example.org", Path: "x"}},
			code: codes.InvalidArgument, msg: "malformed SPIFFE ID filter: path must have a leading slash"},
		{name: "fail/parent filter in another trust domain", filter: &entryv1.ListEntriesRequest_Filter{ByParentId: &types.SPIFFEID{TrustDomain: "other.example", Path: "/x"}},
			code: codes.InvalidArgument, msg: "malformed parent ID filter: "},
		{name: "fail/empty selector set", filter: &entryv1.ListEntriesRequest_Filter{BySelectors: &types.SelectorMatch{}},
			code: codes.InvalidArgument, msg: "malformed selectors filter: empty selector set"},
		{name: "fail/selector without value", filter: &entryv1.ListEntriesRequest_Filter{BySelectors: sel(types.SelectorMatch_MATCH_EXACT, "unix")},
			code: codes.InvalidArgument, msg: "malformed selectors filter: missing selector value"},
		{name: "fail/bad federates with", filter: &entryv1.ListEntriesRequest_Filter{ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"Bad"}}},
			code: codes.InvalidArgument, msg: "malformed federates with filter: "},
		{name: "fail/unknown match behavior", filter: &entryv1.ListEntriesRequest_Filter{BySelectors: &types.SelectorMatch{Selectors: []*types.Selector{{Type: "unix", Value: "x"}}, Match: 9}},
			code: codes.InvalidArgument, msg: "malformed selectors filter: unknown match behavior"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.client.ListEntries(ctx, &entryv1.ListEntriesRequest{Filter: tt.filter})
			if status.Code(err) != tt.code || (tt.code != codes.OK && !strings.HasPrefix(status.Convert(err).Message(), tt.msg)) {
				t.Fatalf("err = %v, want %v %q", err, tt.code, tt.msg)
			}
			if tt.code != codes.OK {
				return
			}
			var got []string
			for _, e := range resp.Entries {
				got = append(got, e.SpiffeId.Path)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			// CountEntries applies the same filter.
			var cf *entryv1.CountEntriesRequest_Filter
			if tt.filter != nil {
				cf = &entryv1.CountEntriesRequest_Filter{BySpiffeId: tt.filter.BySpiffeId, ByParentId: tt.filter.ByParentId,
					BySelectors: tt.filter.BySelectors, ByFederatesWith: tt.filter.ByFederatesWith, ByHint: tt.filter.ByHint, ByDownstream: tt.filter.ByDownstream}
			}
			n, err := f.client.CountEntries(ctx, &entryv1.CountEntriesRequest{Filter: cf})
			if err != nil || int(n.Count) != len(tt.want) {
				t.Fatalf("count = %v, %v; want %d", n, err, len(tt.want))
			}
		})
	}
}

func TestListEntries_Pages(t *testing.T) {
	f := setup(t)
	var es []*types.Entry
	for i := range 25 {
		es = append(es, newEntry(i))
	}
	f.create(t, es...)
	seen := map[string]bool{}
	token := ""
	pages := 0
	for {
		resp, err := f.client.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: 10, PageToken: token, OutputMask: &types.EntryMask{SpiffeId: true}})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.Entries) > 10 {
			t.Fatalf("page of %d", len(resp.Entries))
		}
		for _, e := range resp.Entries {
			if seen[e.Id] || e.ParentId != nil {
				t.Fatalf("entry %v repeated or unmasked", e)
			}
			seen[e.Id] = true
		}
		if resp.NextPageToken == "" {
			break
		}
		token = resp.NextPageToken
	}
	if len(seen) != 25 || pages < 3 {
		t.Fatalf("saw %d entries in %d pages", len(seen), pages)
	}
}

func TestAuthorizedEntriesAreUnimplemented(t *testing.T) {
	f := setup(t)
	// Local callers are refused before the service is reached (agent-only RPC).
	_, err := f.client.GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v", err)
	}
}

// T14: a huge page size is capped, so the server never holds or preallocates
// more than api.MaxPageSize entries for one page; paging still works.
func TestListEntries_T14_HugePageSize(t *testing.T) {
	f := setup(t)
	f.create(t, newEntry(1), newEntry(2))
	resp, err := f.client.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: 1 << 30})
	if err != nil || len(resp.Entries) != 2 {
		t.Fatalf("%v %v", resp, err)
	}
}
