package datastoretest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

func x509s(ders ...string) []datastore.X509Authority {
	var out []datastore.X509Authority
	for _, d := range ders {
		out = append(out, datastore.X509Authority{Certificate: []byte(d)})
	}
	return out
}

func testBundles(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	full := &datastore.Bundle{
		TrustDomain:     "spiffe://example.org",
		X509Authorities: []datastore.X509Authority{{Certificate: []byte("root-1")}, {Certificate: []byte("root-2"), Tainted: true}},
		JWTAuthorities:  []datastore.JWTAuthority{{KeyID: "k1", PublicKey: []byte("pub-1"), ExpiresAt: 1234, Tainted: true}},
		RefreshHint:     300,
		SequenceNumber:  7,
	}

	t.Run("ok/create and fetch", func(t *testing.T) {
		got, err := s.CreateBundle(ctx, full)
		requireNoError(t, err)
		requireEqual(t, got, full, "created bundle")
		got, err = s.FetchBundle(ctx, full.TrustDomain)
		requireNoError(t, err)
		requireEqual(t, got, full, "fetched bundle")
	})
	for _, tt := range []struct {
		name   string
		bundle *datastore.Bundle
		target error
		msg    string
	}{
		{"fail/create existing", &datastore.Bundle{TrustDomain: "spiffe://example.org"}, datastore.ErrAlreadyExists,
			`bundle "spiffe://example.org" already exists`},
		{"fail/create without trust domain", &datastore.Bundle{}, datastore.ErrInvalidArgument, "missing its trust domain"},
		{"fail/create nil", nil, datastore.ErrInvalidArgument, "missing bundle"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, s)
			_, err := s.CreateBundle(ctx, tt.bundle)
			requireError(t, err, tt.target, tt.msg)
			requireUnchanged(t, s, before)
		})
	}
	t.Run("fail/fetch unknown", func(t *testing.T) {
		_, err := s.FetchBundle(ctx, "spiffe://nosuch.org")
		requireError(t, err, datastore.ErrNotFound, `bundle "spiffe://nosuch.org" not found`)
	})

	t.Run("ok/list and count with pages", func(t *testing.T) {
		for i := range 4 {
			createBundle(t, s, fmt.Sprintf("spiffe://td%d.org", i), fmt.Sprintf("r%d", i))
		}
		n, err := s.CountBundles(ctx)
		requireNoError(t, err)
		requireEqual(t, n, int32(5), "count")
		p := &datastore.Pagination{PageSize: 2}
		var got []string
		pages := 0
		for {
			page, token, err := s.ListBundles(ctx, p)
			requireNoError(t, err)
			pages++
			for _, b := range page {
				got = append(got, b.TrustDomain)
			}
			if token == "" {
				break
			}
		}
		requireEqual(t, pages, 3, "pages")
		requireEqual(t, got, []string{"spiffe://example.org", "spiffe://td0.org", "spiffe://td1.org", "spiffe://td2.org", "spiffe://td3.org"}, "bundles")
		_, _, err = s.ListBundles(ctx, &datastore.Pagination{Token: "x", PageSize: 2})
		requireError(t, err, datastore.ErrInvalidArgument, `could not parse token "x"`)
	})

	t.Run("ok/update", func(t *testing.T) {
		b := createBundle(t, s, "spiffe://upd.org", "r1")
		b.X509Authorities = x509s("r1", "r2")
		got, err := s.UpdateBundle(ctx, b)
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(1), "sequence after a change")
		requireEqual(t, got.X509Authorities, x509s("r1", "r2"), "authorities")
		seq, err := s.LatestChangeSeq(ctx)
		requireNoError(t, err)
		got, err = s.UpdateBundle(ctx, got)
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(1), "sequence after no change")
		seq2, err := s.LatestChangeSeq(ctx)
		requireNoError(t, err)
		requireEqual(t, seq2, seq, "no change recorded for a no-op update")
		got.RefreshHint = 60
		got, err = s.UpdateBundle(ctx, got)
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(2), "sequence after a refresh hint change")
		got.SequenceNumber = 10
		got.X509Authorities = x509s("r3")
		got, err = s.UpdateBundle(ctx, got)
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(10), "a larger given sequence is kept")
		fetched, err := s.FetchBundle(ctx, "spiffe://upd.org")
		requireNoError(t, err)
		requireEqual(t, fetched, got, "fetched bundle")
	})
	t.Run("fail/update unknown", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.UpdateBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://nosuch.org"})
		requireError(t, err, datastore.ErrNotFound, "not found")
		requireUnchanged(t, s, before)
	})

	t.Run("ok/set creates then replaces", func(t *testing.T) {
		got, err := s.SetBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://set.org", X509Authorities: x509s("s1")})
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(0), "created sequence")
		got, err = s.SetBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://set.org", X509Authorities: x509s("s2")})
		requireNoError(t, err)
		requireEqual(t, got.X509Authorities, x509s("s2"), "replaced authorities")
		requireEqual(t, got.SequenceNumber, int64(1), "sequence")
	})

	t.Run("ok/append creates, adds and dedupes", func(t *testing.T) {
		jwt := func(kid string) datastore.JWTAuthority {
			return datastore.JWTAuthority{KeyID: kid, PublicKey: []byte("pub-" + kid), ExpiresAt: 99}
		}
		got, err := s.AppendBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://app.org", X509Authorities: x509s("a1"), RefreshHint: 5})
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(0), "created sequence")
		got, err = s.AppendBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://app.org", X509Authorities: x509s("a1"), RefreshHint: 50})
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(0), "sequence after appending nothing new")
		requireEqual(t, got.RefreshHint, int64(5), "refresh hint kept")
		got, err = s.AppendBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://app.org",
			X509Authorities: x509s("a2", "a1"), JWTAuthorities: []datastore.JWTAuthority{jwt("k1")}})
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(1), "sequence after append")
		got, err = s.AppendBundle(ctx, &datastore.Bundle{TrustDomain: "spiffe://app.org",
			JWTAuthorities: []datastore.JWTAuthority{jwt("k1"), jwt("k2")}})
		requireNoError(t, err)
		requireEqual(t, got.SequenceNumber, int64(2), "sequence after second append")
		requireEqual(t, got.X509Authorities, x509s("a1", "a2"), "X.509 authorities")
		requireEqual(t, got.JWTAuthorities, []datastore.JWTAuthority{jwt("k1"), jwt("k2")}, "JWT authorities")
		fetched, err := s.FetchBundle(ctx, "spiffe://app.org")
		requireNoError(t, err)
		requireEqual(t, fetched, got, "fetched bundle")
	})

	t.Run("ok/update func", func(t *testing.T) {
		createBundle(t, s, "spiffe://fn.org", "f1")
		got, err := s.UpdateBundleFunc(ctx, "spiffe://fn.org", func(b *datastore.Bundle) error {
			b.X509Authorities[0].Tainted = true
			b.TrustDomain = "spiffe://ignored.org"
			return nil
		})
		requireNoError(t, err)
		requireEqual(t, got, &datastore.Bundle{TrustDomain: "spiffe://fn.org",
			X509Authorities: []datastore.X509Authority{{Certificate: []byte("f1"), Tainted: true}}, SequenceNumber: 1}, "updated bundle")
		fetched, err := s.FetchBundle(ctx, "spiffe://fn.org")
		requireNoError(t, err)
		requireEqual(t, fetched, got, "fetched bundle")
	})
	t.Run("fail/update func error changes nothing", func(t *testing.T) {
		errBoom := errors.New("boom")
		before := snapshot(t, s)
		_, err := s.UpdateBundleFunc(ctx, "spiffe://fn.org", func(b *datastore.Bundle) error {
			b.X509Authorities = nil
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("expected fn's error, got %v", err)
		}
		requireUnchanged(t, s, before)
	})
	t.Run("fail/update func unknown", func(t *testing.T) {
		called := false
		_, err := s.UpdateBundleFunc(ctx, "spiffe://nosuch.org", func(*datastore.Bundle) error { called = true; return nil })
		requireError(t, err, datastore.ErrNotFound, "not found")
		requireEqual(t, called, false, "fn called")
	})
}

func testBundleDelete(t *testing.T, open func(testing.TB) *datastore.Store) {
	ctx := t.Context()
	setup := func(t *testing.T) (*datastore.Store, *datastore.Entry, *datastore.Entry) {
		s := open(t)
		createBundle(t, s, "spiffe://fed.org", "f")
		createBundle(t, s, "spiffe://other.org", "o")
		e1 := createEntry(t, s, &datastore.Entry{SPIFFEID: td + "/w1", ParentID: td + "/node", Selectors: sels("a:1"),
			FederatesWith: []string{"spiffe://fed.org", "spiffe://other.org"}})
		e2 := createEntry(t, s, &datastore.Entry{SPIFFEID: td + "/w2", ParentID: td + "/node", Selectors: sels("a:2"),
			FederatesWith: []string{"spiffe://other.org"}})
		return s, e1, e2
	}

	t.Run("fail/restrict while an entry federates", func(t *testing.T) {
		s, _, _ := setup(t)
		before := snapshot(t, s)
		err := s.DeleteBundle(ctx, "spiffe://fed.org", datastore.BundleDeleteRestrict)
		requireError(t, err, datastore.ErrFailedPrecondition, "cannot delete bundle; federated with 1 registration entries")
		var bie *datastore.BundleInUseError
		if !errors.As(err, &bie) || bie.Entries != 1 {
			t.Fatalf("expected *BundleInUseError with 1 entry, got %v", err)
		}
		requireUnchanged(t, s, before)
	})
	t.Run("ok/restrict without entries", func(t *testing.T) {
		s, _, _ := setup(t)
		createBundle(t, s, "spiffe://lonely.org", "l")
		requireNoError(t, s.DeleteBundle(ctx, "spiffe://lonely.org", datastore.BundleDeleteRestrict))
		_, err := s.FetchBundle(ctx, "spiffe://lonely.org")
		requireError(t, err, datastore.ErrNotFound, "not found")
	})
	t.Run("ok/dissociate", func(t *testing.T) {
		s, e1, e2 := setup(t)
		requireNoError(t, s.DeleteBundle(ctx, "spiffe://fed.org", datastore.BundleDeleteDissociate))
		got, err := s.FetchEntry(ctx, e1.ID)
		requireNoError(t, err)
		requireEqual(t, got.FederatesWith, []string{"spiffe://other.org"}, "federates with")
		requireEqual(t, got.RevisionNumber, int64(1), "revision")
		got, err = s.FetchEntry(ctx, e2.ID)
		requireNoError(t, err)
		requireEqual(t, got, e2, "unrelated entry")
		n, err := s.CountEntries(ctx, &datastore.ListEntriesRequest{ByFederatesWith: &datastore.ByFederatesWith{
			TrustDomains: []string{"spiffe://other.org"}, Match: datastore.MatchExact}})
		requireNoError(t, err)
		requireEqual(t, n, int32(2), "entries federating with exactly other.org")
		_, err = s.FetchBundle(ctx, "spiffe://fed.org")
		requireError(t, err, datastore.ErrNotFound, "not found")
	})
	t.Run("ok/delete", func(t *testing.T) {
		s, e1, e2 := setup(t)
		requireNoError(t, s.DeleteBundle(ctx, "spiffe://other.org", datastore.BundleDeleteDelete))
		for _, e := range []*datastore.Entry{e1, e2} {
			_, err := s.FetchEntry(ctx, e.ID)
			requireError(t, err, datastore.ErrNotFound, "not found")
		}
		// The remaining bundle can now be deleted in restrict mode.
		requireNoError(t, s.DeleteBundle(ctx, "spiffe://fed.org", datastore.BundleDeleteRestrict))
		n, err := s.CountBundles(ctx)
		requireNoError(t, err)
		requireEqual(t, n, int32(0), "bundles")
	})
	t.Run("fail/unknown bundle", func(t *testing.T) {
		s, _, _ := setup(t)
		before := snapshot(t, s)
		err := s.DeleteBundle(ctx, "spiffe://nosuch.org", datastore.BundleDeleteDelete)
		requireError(t, err, datastore.ErrNotFound, `bundle "spiffe://nosuch.org" not found`)
		requireUnchanged(t, s, before)
	})
	t.Run("fail/unknown mode", func(t *testing.T) {
		s, _, _ := setup(t)
		before := snapshot(t, s)
		err := s.DeleteBundle(ctx, "spiffe://fed.org", 42)
		requireError(t, err, datastore.ErrInvalidArgument, "unknown bundle delete mode 42")
		requireUnchanged(t, s, before)
	})
}

// testBundleSequence is TB-02: the sequence number of a bundle increases on
// every content change, whichever method made it, and never otherwise.
func testBundleSequence(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	const trustDomain = "spiffe://seq.org"
	b, err := s.AppendBundle(ctx, &datastore.Bundle{TrustDomain: trustDomain, X509Authorities: x509s("r0")})
	requireNoError(t, err)
	last := b.SequenceNumber
	content := func(b *datastore.Bundle) string {
		return fmt.Sprintf("%v|%v|%d", b.X509Authorities, b.JWTAuthorities, b.RefreshHint)
	}
	prev := content(b)
	ops := []func(i int) (*datastore.Bundle, error){
		func(i int) (*datastore.Bundle, error) {
			return s.AppendBundle(ctx, &datastore.Bundle{TrustDomain: trustDomain, X509Authorities: x509s(fmt.Sprintf("r%d", i))})
		},
		func(i int) (*datastore.Bundle, error) { // no change
			return s.AppendBundle(ctx, &datastore.Bundle{TrustDomain: trustDomain, X509Authorities: x509s("r0")})
		},
		func(i int) (*datastore.Bundle, error) {
			return s.UpdateBundleFunc(ctx, trustDomain, func(b *datastore.Bundle) error {
				b.JWTAuthorities = append(b.JWTAuthorities, datastore.JWTAuthority{KeyID: fmt.Sprintf("k%d", i), PublicKey: []byte{byte(i)}})
				return nil
			})
		},
		func(int) (*datastore.Bundle, error) { // no change
			return s.UpdateBundleFunc(ctx, trustDomain, func(*datastore.Bundle) error { return nil })
		},
		func(i int) (*datastore.Bundle, error) {
			cur, err := s.FetchBundle(ctx, trustDomain)
			if err != nil {
				return nil, err
			}
			cur.RefreshHint = int64(i)
			return s.UpdateBundle(ctx, cur)
		},
		func(i int) (*datastore.Bundle, error) {
			cur, err := s.FetchBundle(ctx, trustDomain)
			if err != nil {
				return nil, err
			}
			cur.X509Authorities = cur.X509Authorities[1:]
			return s.SetBundle(ctx, cur)
		},
	}
	for i := 1; i <= 30; i++ {
		got, err := ops[i%len(ops)](i)
		requireNoError(t, err)
		c := content(got)
		switch {
		case c != prev && got.SequenceNumber <= last:
			t.Fatalf("op %d changed the content but the sequence went from %d to %d", i, last, got.SequenceNumber)
		case c == prev && got.SequenceNumber != last:
			t.Fatalf("op %d changed nothing but the sequence went from %d to %d", i, last, got.SequenceNumber)
		}
		fetched, err := s.FetchBundle(ctx, trustDomain)
		requireNoError(t, err)
		requireEqual(t, fetched, got, "fetched bundle")
		last, prev = got.SequenceNumber, c
	}
}

func testCAJournal(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	t.Run("fail/fetch unknown", func(t *testing.T) {
		_, err := s.FetchCAJournal(ctx, "server")
		requireError(t, err, datastore.ErrNotFound, `CA journal "server" not found`)
	})
	t.Run("ok/set, fetch, replace", func(t *testing.T) {
		requireNoError(t, s.SetCAJournal(ctx, "server", []byte("v1")))
		got, err := s.FetchCAJournal(ctx, "server")
		requireNoError(t, err)
		requireEqual(t, string(got), "v1", "journal")
		requireNoError(t, s.SetCAJournal(ctx, "server", []byte("v2")))
		got, err = s.FetchCAJournal(ctx, "server")
		requireNoError(t, err)
		requireEqual(t, string(got), "v2", "journal")
		requireNoError(t, s.SetCAJournal(ctx, "other", nil))
		got, err = s.FetchCAJournal(ctx, "other")
		requireNoError(t, err)
		requireEqual(t, len(got), 0, "empty journal")
	})
	t.Run("fail/empty key", func(t *testing.T) {
		requireError(t, s.SetCAJournal(ctx, "", []byte("x")), datastore.ErrInvalidArgument, "key is empty")
	})
}
