package cache_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/agent/cache/cachetest"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("neural-hive.local")
	partner = spiffeid.RequireTrustDomainFromString("partner.example")
)

func newCache(tb testing.TB, cfg cache.Config) *cache.Cache {
	tb.Helper()
	if cfg.TrustDomain.IsZero() {
		cfg.TrustDomain = td
	}
	c, err := cache.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return c
}

// signal reports whether sub has a pending notification, consuming it.
func signal(sub *cache.Subscription) bool {
	select {
	case <-sub.Updates():
		return true
	default:
		return false
	}
}

func ids(u *cache.Update) []string {
	var out []string
	for _, id := range u.Identities {
		out = append(out, id.Entry.ID)
	}
	return out
}

func withSVIDs(tb testing.TB, c *cache.Cache, ca *cachetest.CA, entries ...*cache.Entry) {
	tb.Helper()
	m := make(map[string]*cache.X509SVID)
	for _, e := range entries {
		m[e.ID] = ca.SVIDFor(tb, e)
	}
	c.SetSVIDs(m)
}

func TestNewRequiresTrustDomain(t *testing.T) {
	if _, err := cache.New(cache.Config{}); err == nil {
		t.Fatal("New without trust domain: want error")
	}
}

func TestMatchingSubsetAndOrder(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	entries := []*cache.Entry{
		cachetest.Entry("c", "spiffe://neural-hive.local/c", "unix:uid:1000"),
		cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1000", "unix:gid:1000"),
		cachetest.Entry("b", "spiffe://neural-hive.local/b", "unix:uid:1000", "unix:gid:2000"),
		cachetest.Entry("d", "spiffe://neural-hive.local/d"), // no selectors: matches nothing
		cachetest.Entry("e", "spiffe://neural-hive.local/e", "unix:uid:2000"),
	}
	c.SetEntries(entries)
	withSVIDs(t, c, ca, entries...)

	for _, tt := range []struct {
		name      string
		selectors []string
		want      []string
	}{
		{name: "ok/uid and gid", selectors: []string{"unix:uid:1000", "unix:gid:1000", "unix:user:x"}, want: []string{"a", "c"}},
		{name: "ok/uid only", selectors: []string{"unix:uid:1000"}, want: []string{"c"}},
		{name: "ok/other uid", selectors: []string{"unix:uid:2000", "unix:gid:2000"}, want: []string{"e"}},
		{name: "fail/no selectors", selectors: nil, want: nil},
		{name: "fail/unknown", selectors: []string{"unix:uid:3000"}, want: nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(c.Snapshot(tt.selectors)); !slices.Equal(got, tt.want) {
				t.Errorf("Snapshot identities = %v, want %v", got, tt.want)
			}
			var got []string
			for _, e := range c.MatchingEntries(tt.selectors) {
				got = append(got, e.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("MatchingEntries = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIdentityNeedsSVID(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	e := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	c.SetEntries([]*cache.Entry{e})
	sel := []string{"unix:uid:1"}
	if u := c.Snapshot(sel); u.HasIdentity() {
		t.Fatal("identity without SVID")
	}
	if got := c.MatchingEntries(sel); len(got) != 1 {
		t.Fatalf("MatchingEntries = %d, want 1 (JWT needs no X509-SVID)", len(got))
	}
	// An SVID for another SPIFFE ID (the entry's ID changed) is not served.
	other := ca.X509SVID(t, spiffeid.RequireFromString("spiffe://neural-hive.local/old"), time.Now(), time.Now().Add(time.Hour))
	other.EntryRevision = 1
	c.SetSVIDs(map[string]*cache.X509SVID{"a": other})
	if u := c.Snapshot(sel); u.HasIdentity() {
		t.Fatal("served an SVID whose ID is not the entry's")
	}
	withSVIDs(t, c, ca, e)
	if u := c.Snapshot(sel); !u.HasIdentity() {
		t.Fatal("no identity after SetSVIDs")
	}
}

func TestSubscriptionNotifiesOnlyAffected(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	c.SetBundle(ca.Bundle())
	sub1 := c.Subscribe([]string{"unix:uid:1000", "unix:gid:1000"})
	defer sub1.Close()
	sub2 := c.Subscribe([]string{"unix:uid:2000"})
	defer sub2.Close()
	if !signal(sub1) || !signal(sub2) {
		t.Fatal("Subscribe: want an initial signal")
	}
	if sub1.Latest().HasIdentity() {
		t.Fatal("identity before any entry")
	}

	e1 := cachetest.Entry("e1", "spiffe://neural-hive.local/w1", "unix:uid:1000")
	c.SetEntries([]*cache.Entry{e1})
	if signal(sub1) || signal(sub2) {
		t.Fatal("entry without SVID changed no identity set; want no signal")
	}
	withSVIDs(t, c, ca, e1)
	if !signal(sub1) {
		t.Fatal("sub1 not notified of its new identity")
	}
	if signal(sub2) {
		t.Fatal("sub2 notified of another workload's identity")
	}
	if got := ids(sub1.Latest()); !slices.Equal(got, []string{"e1"}) {
		t.Fatalf("sub1 identities = %v", got)
	}

	// The same entries again: nothing changes.
	same := *e1
	same.Selectors = slices.Clone(e1.Selectors)
	c.SetEntries([]*cache.Entry{&same})
	if signal(sub1) || signal(sub2) {
		t.Fatal("identical SetEntries notified")
	}

	// An update of the entry (hint) is a change of the identity set.
	upd := *e1
	upd.Hint, upd.RevisionNumber = "web", 2
	c.SetEntries([]*cache.Entry{&upd})
	if !signal(sub1) || signal(sub2) {
		t.Fatal("entry update: want sub1 only")
	}
	if got := sub1.Latest().Identities[0].Entry.Hint; got != "web" {
		t.Fatalf("hint = %q, want web", got)
	}

	// Removal.
	c.SetEntries(nil)
	if !signal(sub1) || signal(sub2) {
		t.Fatal("removal: want sub1 only")
	}
	if sub1.Latest().HasIdentity() {
		t.Fatal("identity after removal")
	}
	if st := c.StaleEntries(time.Now()); len(st) != 0 {
		t.Fatalf("StaleEntries after removal = %d", len(st))
	}
}

func TestSubscriptionCoalesces(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	sub := c.Subscribe([]string{"unix:uid:1"})
	defer sub.Close()
	signal(sub)
	var entries []*cache.Entry
	for _, id := range []string{"a", "b", "c"} {
		entries = append(entries, cachetest.Entry(id, "spiffe://neural-hive.local/"+id, "unix:uid:1"))
		c.SetEntries(entries)
		withSVIDs(t, c, ca, entries...)
	}
	if !signal(sub) {
		t.Fatal("no signal")
	}
	if signal(sub) {
		t.Fatal("signals did not coalesce")
	}
	if got := ids(sub.Latest()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Latest = %v, want the full state", got)
	}
}

func TestSubscriptionClose(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	sub := c.Subscribe([]string{"unix:uid:1"})
	signal(sub)
	sub.Close()
	sub.Close() // idempotent
	e := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	c.SetEntries([]*cache.Entry{e})
	withSVIDs(t, c, ca, e)
	if signal(sub) {
		t.Fatal("closed subscription notified")
	}
}

func TestBundles(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	pca := cachetest.NewCA(t, partner)
	c := newCache(t, cache.Config{})
	fed := cachetest.Entry("f", "spiffe://neural-hive.local/f", "unix:uid:1")
	fed.FederatesWith = []spiffeid.TrustDomain{partner}
	plain := cachetest.Entry("p", "spiffe://neural-hive.local/p", "unix:uid:2")
	c.SetEntries([]*cache.Entry{fed, plain})
	withSVIDs(t, c, ca, fed, plain)
	subFed := c.Subscribe([]string{"unix:uid:1"})
	defer subFed.Close()
	subPlain := c.Subscribe([]string{"unix:uid:2"})
	defer subPlain.Close()
	signal(subFed)
	signal(subPlain)

	c.SetBundle(ca.Bundle())
	if !signal(subFed) || !signal(subPlain) {
		t.Fatal("own bundle: every subscriber is notified")
	}
	c.SetBundle(ca.Bundle()) // equal content
	if signal(subFed) || signal(subPlain) {
		t.Fatal("equal bundle notified")
	}
	c.SetBundle(pca.Bundle())
	if !signal(subFed) {
		t.Fatal("federated bundle: federating subscriber not notified")
	}
	if signal(subPlain) {
		t.Fatal("federated bundle: non-federating subscriber notified")
	}
	if got := subFed.Latest().FederatedBundles[partner]; got == nil {
		t.Fatal("federated bundle missing from update")
	}
	if got := subPlain.Latest().FederatedBundles; len(got) != 0 {
		t.Fatalf("non-federating update has federated bundles %v", got)
	}
	c.RemoveBundle(partner)
	if !signal(subFed) || len(subFed.Latest().FederatedBundles) != 0 {
		t.Fatal("RemoveBundle: federated bundle still served")
	}
	c.RemoveBundle(td) // own bundle stays
	if c.Bundle(td) == nil {
		t.Fatal("own bundle removed")
	}
}

func TestStaleEntries(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	now := time.Now()
	mk := func(id string) *cache.Entry {
		return cachetest.Entry(id, "spiffe://neural-hive.local/"+id, "unix:uid:1")
	}
	fresh, half, revised, none, moved := mk("fresh"), mk("half"), mk("revised"), mk("none"), mk("moved")
	c.SetEntries([]*cache.Entry{fresh, half, revised, none, moved})
	svid := func(e *cache.Entry, nb, na time.Time, rev int64) *cache.X509SVID {
		s := ca.X509SVID(t, e.SPIFFEID, nb, na)
		s.EntryRevision = rev
		return s
	}
	c.SetSVIDs(map[string]*cache.X509SVID{
		"fresh":   svid(fresh, now.Add(-time.Minute), now.Add(time.Hour), 1),
		"half":    svid(half, now.Add(-50*time.Minute), now.Add(40*time.Minute), 1),
		"revised": svid(revised, now.Add(-time.Minute), now.Add(2*time.Hour), 1),
		"moved":   svid(moved, now.Add(-time.Minute), now.Add(3*time.Hour), 1),
	})
	rev := *revised
	rev.RevisionNumber = 2
	mv := *moved
	mv.SPIFFEID = spiffeid.RequireFromString("spiffe://neural-hive.local/moved-elsewhere")
	c.SetEntries([]*cache.Entry{fresh, half, &rev, none, &mv})

	var got []string
	for _, s := range c.StaleEntries(now) {
		got = append(got, s.Entry.ID)
	}
	want := []string{"none", "half", "revised", "moved"} // no SVID first, then by expiry
	if !slices.Equal(got, want) {
		t.Fatalf("StaleEntries(now) = %v, want %v", got, want)
	}
	// T1: a pure function of now: half an hour later "fresh" is due too.
	got = got[:0]
	for _, s := range c.StaleEntries(now.Add(31 * time.Minute)) {
		got = append(got, s.Entry.ID)
	}
	if !slices.Contains(got, "fresh") {
		t.Fatalf("StaleEntries(now+31m) = %v, want fresh included", got)
	}
	if next, ok := c.NextX509Rotation(); !ok || !next.IsZero() {
		t.Fatalf("NextX509Rotation = %v, %v; want zero time (entries already stale)", next, ok)
	}
	c.SetEntries([]*cache.Entry{fresh})
	next, ok := c.NextX509Rotation()
	wantNext := now.Add(-time.Minute).Add(61 * time.Minute / 2)
	if !ok || next.Sub(wantNext).Abs() > time.Second {
		t.Fatalf("NextX509Rotation = %v, want %v", next, wantNext)
	}
	c.SetEntries(nil)
	if _, ok := c.NextX509Rotation(); ok {
		t.Fatal("NextX509Rotation with no entries: want ok=false")
	}
}

func TestShouldRotateX509(t *testing.T) {
	nb := time.Unix(1000, 0)
	na := nb.Add(time.Hour)
	for _, tt := range []struct {
		name string
		now  time.Time
		want bool
	}{
		{"ok/fresh", nb.Add(time.Minute), false},
		{"ok/just before half", nb.Add(29 * time.Minute), false},
		{"fail/half", nb.Add(30 * time.Minute), true},
		{"fail/expired", na.Add(time.Second), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := cache.ShouldRotateX509(tt.now, nb, na); got != tt.want {
				t.Fatalf("ShouldRotateX509 = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSharedIntermediates(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	a := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	b := cachetest.Entry("b", "spiffe://neural-hive.local/b", "unix:uid:1")
	c.SetEntries([]*cache.Entry{a, b})
	sa, sb := ca.SVIDFor(t, a), ca.SVIDFor(t, b)
	if sa.Chain[1] == sb.Chain[1] {
		t.Fatal("test setup: intermediates should be distinct copies")
	}
	c.SetSVIDs(map[string]*cache.X509SVID{"a": sa, "b": sb})
	u := c.Snapshot([]string{"unix:uid:1"})
	if len(u.Identities) != 2 {
		t.Fatalf("identities = %d", len(u.Identities))
	}
	if u.Identities[0].SVID.Intermediates()[0] != u.Identities[1].SVID.Intermediates()[0] {
		t.Fatal("the CA chain is stored once per SVID; want one shared copy")
	}
	stored := u.Identities[0].SVID
	if want := append(append([]byte{}, sa.Chain[0].Raw...), sa.Chain[1].Raw...); !bytes.Equal(stored.ChainDER(), want) {
		t.Fatal("ChainDER is not leaf || intermediate")
	}
	certs, err := stored.Certificates()
	if err != nil || len(certs) != 2 || !certs[0].Equal(sa.Chain[0]) || stored.ID != a.SPIFFEID {
		t.Fatalf("Certificates = %v, %v", certs, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(stored.PrivateKeyDER())
	if err != nil || !key.(*ecdsa.PrivateKey).Equal(sa.Key) {
		t.Fatalf("PrivateKeyDER does not hold the SVID key: %v", err)
	}
	// Releasing: after both SVIDs are gone the intermediate is dropped;
	// nothing observable but no panic on double release paths.
	c.SetEntries(nil)
	if sb.Chain[1] == sa.Chain[1] {
		t.Fatal("SetSVIDs modified the caller's SVID")
	}
}

func TestEntryFromProto(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      *types.Entry
		wantErr string
	}{
		{name: "ok", in: &types.Entry{
			Id:             "id1",
			SpiffeId:       &types.SPIFFEID{TrustDomain: "neural-hive.local", Path: "/w"},
			ParentId:       &types.SPIFFEID{TrustDomain: "neural-hive.local", Path: "/spire/agent/x"},
			Selectors:      []*types.Selector{{Type: "unix", Value: "uid:1000"}},
			FederatesWith:  []string{"partner.example"},
			Hint:           "h",
			RevisionNumber: 3,
			CreatedAt:      7,
			DnsNames:       []string{"a.example"},
		}},
		{name: "fail/nil", in: nil, wantErr: "entry is nil"},
		{name: "fail/bad spiffe id", in: &types.Entry{Id: "x", SpiffeId: &types.SPIFFEID{TrustDomain: "BAD TD", Path: "/w"}}, wantErr: "invalid SPIFFE ID"},
		{name: "fail/bad selector", in: &types.Entry{Id: "x", SpiffeId: &types.SPIFFEID{TrustDomain: "td", Path: "/w"},
			Selectors: []*types.Selector{{Type: "", Value: "v"}}}, wantErr: "invalid selector type"},
		{name: "fail/bad federated td", in: &types.Entry{Id: "x", SpiffeId: &types.SPIFFEID{TrustDomain: "td", Path: "/w"},
			FederatesWith: []string{"spiffe://"}}, wantErr: "invalid federated trust domain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := cache.EntryFromProto(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.SPIFFEID.String() != "spiffe://neural-hive.local/w" || !slices.Equal(e.Selectors, []string{"unix:uid:1000"}) ||
				e.FederatesWith[0] != partner || e.ParentID.Path() != "/spire/agent/x" || e.Hint != "h" ||
				e.RevisionNumber != 3 || e.CreatedAt != 7 || e.DNSNames[0] != "a.example" {
				t.Fatalf("converted entry = %+v", e)
			}
		})
	}
}

// TestConcurrentUse runs writers and subscribers together under -race.
func TestConcurrentUse(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	c.SetBundle(ca.Bundle())
	var entries []*cache.Entry
	svids := make(map[string]*cache.X509SVID)
	for i := range 20 {
		e := cachetest.Entry(string(rune('a'+i)), "spiffe://neural-hive.local/w", "unix:uid:1")
		entries = append(entries, e)
		svids[e.ID] = ca.SVIDFor(t, e)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			sub := c.Subscribe([]string{"unix:uid:1"})
			defer sub.Close()
			for {
				select {
				case <-sub.Updates():
					for _, id := range sub.Latest().Identities {
						_ = id.SVID.NotAfter
					}
				case <-done:
					return
				}
			}
		})
	}
	for i := range 200 {
		c.SetEntries(entries[:1+i%len(entries)])
		c.SetSVIDs(svids)
		_ = c.StaleEntries(time.Now())
		_ = c.Snapshot([]string{"unix:uid:1"})
	}
	close(done)
	wg.Wait()
}

func TestCountsAndValidity(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := newCache(t, cache.Config{})
	a := cachetest.Entry("a", "spiffe://neural-hive.local/a", "unix:uid:1")
	b := cachetest.Entry("b", "spiffe://neural-hive.local/b", "unix:uid:1")
	c.SetEntries([]*cache.Entry{a, b})
	if n, v := c.EntryCount(), c.X509SVIDValidity(); n != 2 || len(v) != 0 {
		t.Fatalf("without SVIDs: %d entries, %v", n, v)
	}
	nb, na := time.Now().Add(-time.Minute).Truncate(time.Second), time.Now().Add(time.Hour).Truncate(time.Second)
	c.SetSVIDs(map[string]*cache.X509SVID{"a": ca.X509SVID(t, a.SPIFFEID, nb, na)})
	got := c.X509SVIDValidity()
	if len(got) != 1 || got[0].ID != a.SPIFFEID || !got[0].NotBefore.Equal(nb) || !got[0].NotAfter.Equal(na) {
		t.Fatalf("validity = %+v", got)
	}
	// An SVID that is not served (another SPIFFE ID) is not reported.
	c.SetSVIDs(map[string]*cache.X509SVID{"b": ca.X509SVID(t, spiffeid.RequireFromString("spiffe://neural-hive.local/old"), nb, na)})
	if got := c.X509SVIDValidity(); len(got) != 1 {
		t.Fatalf("validity with an unusable SVID = %+v", got)
	}
}
