package ca

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// TestThresholds pins SPIRE's schedule: prepare after 1/2 of the life (at
// most 30 days before expiry), activate after 5/6 (at most 7 days before).
func TestThresholds(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name              string
		life              time.Duration
		prepare, activate time.Duration // after t0
	}{
		{name: "ok/24h", life: 24 * time.Hour, prepare: 12 * time.Hour, activate: 20 * time.Hour},
		{name: "ok/1h", life: time.Hour, prepare: 30 * time.Minute, activate: 50 * time.Minute},
		{name: "ok/1y capped", life: 365 * 24 * time.Hour, prepare: 335 * 24 * time.Hour, activate: 358 * 24 * time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			notAfter := t0.Add(tt.life)
			if got := preparationThreshold(t0, notAfter); !got.Equal(t0.Add(tt.prepare)) {
				t.Fatalf("preparation threshold %s after issue, want %s", got.Sub(t0), tt.prepare)
			}
			if got := activationThreshold(t0, notAfter); !got.Equal(t0.Add(tt.activate)) {
				t.Fatalf("activation threshold %s after issue, want %s", got.Sub(t0), tt.activate)
			}
			at := t0.Add(tt.prepare)
			if shouldPrepareNext(t0, notAfter, at) || !shouldPrepareNext(t0, notAfter, at.Add(time.Nanosecond)) {
				t.Fatal("prepare must start strictly after the threshold")
			}
			at = t0.Add(tt.activate)
			if shouldActivateNext(t0, notAfter, at) || !shouldActivateNext(t0, notAfter, at.Add(time.Nanosecond)) {
				t.Fatal("activate must start strictly after the threshold")
			}
		})
	}
	if got := MaxSVIDTTLForCATTL(24 * time.Hour); got != 4*time.Hour {
		t.Fatalf("MaxSVIDTTLForCATTL(24h) = %s", got)
	}
}

// TestRun_Rotation runs the rotation loop in a synctest bubble with a 1h
// CA TTL: the next authorities are prepared at half-life and published
// before use (FD-01), activated at 5/6, the old ones kept until they
// expire, and Run returns nil when cancelled.
func TestRun_Rotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newTestStore(t)
		c, err := New(Config{TrustDomain: testTD, KeyManager: NewMemoryKeyManager(), Store: store, CATTL: time.Hour})
		requireNoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		requireNoError(t, c.Init(ctx))
		t0 := time.Now()
		a, aj := c.X509Authorities().Active, c.JWTAuthorities().Active
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		at := func(d time.Duration) {
			time.Sleep(time.Until(t0.Add(d)))
			synctest.Wait()
		}
		check := func(what string, got Slots, active, prepared, old string) {
			t.Helper()
			id := func(i *AuthorityInfo) string {
				if i == nil {
					return ""
				}
				return i.AuthorityID
			}
			if id(got.Active) != active || id(got.Prepared) != prepared || id(got.Old) != old {
				t.Fatalf("%s at %s: active=%q prepared=%q old=%q, want %q %q %q", what, time.Since(t0),
					id(got.Active), id(got.Prepared), id(got.Old), active, prepared, old)
			}
		}

		at(30*time.Minute + 5*time.Second) // half-life reached, but not after it at a tick yet
		check("x509", c.X509Authorities(), a.AuthorityID, "", "")
		check("jwt", c.JWTAuthorities(), aj.AuthorityID, "", "")

		at(30*time.Minute + 15*time.Second) // tick at 30m10s prepared
		b, bj := c.X509Authorities().Prepared, c.JWTAuthorities().Prepared
		if b == nil || bj == nil {
			t.Fatal("nothing prepared after half-life")
		}
		check("x509", c.X509Authorities(), a.AuthorityID, b.AuthorityID, "")
		check("jwt", c.JWTAuthorities(), aj.AuthorityID, bj.AuthorityID, "")
		bundle, err := store.FetchBundle(ctx, testTD.IDString()) // FD-01: published while still prepared
		requireNoError(t, err)
		if len(bundle.X509Authorities) != 2 || !bundleHasJWTKey(bundle, bj.AuthorityID) {
			t.Fatal("FD-01: prepared authorities are not in the bundle before activation")
		}
		if x509AuthorityID(bundle.X509Authorities[1].Certificate) != b.AuthorityID {
			t.Fatal("FD-01: prepared CA is not the published one")
		}

		at(50*time.Minute + 5*time.Second)
		check("x509", c.X509Authorities(), a.AuthorityID, b.AuthorityID, "")
		at(50*time.Minute + 15*time.Second) // tick at 50m10s activated
		check("x509", c.X509Authorities(), b.AuthorityID, "", a.AuthorityID)
		check("jwt", c.JWTAuthorities(), bj.AuthorityID, "", aj.AuthorityID)
		key := newECKey(t)
		chain := signSVID(t, c, "spiffe://example.org/w", &key.PublicKey)
		if AuthorityIDFromSKID(chain[0].AuthorityKeyId) != b.AuthorityID {
			t.Fatal("SVIDs are not signed by the activated CA")
		}
		token, err := c.SignJWTSVID(ctx, JWTSVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), Audience: []string{"x"}})
		requireNoError(t, err)
		if h, _ := jwtParts(t, token); h["kid"] != bj.AuthorityID {
			t.Fatal("JWT-SVIDs are not signed by the activated key")
		}

		at(59*time.Minute + 55*time.Second) // old kept until it expires
		check("x509", c.X509Authorities(), b.AuthorityID, "", a.AuthorityID)
		at(60*time.Minute + 5*time.Second) // expired at 60m: dropped
		check("x509", c.X509Authorities(), b.AuthorityID, "", "")
		check("jwt", c.JWTAuthorities(), bj.AuthorityID, "", "")

		at(60*time.Minute + 25*time.Second) // B issued at 30m10s: its half-life passed at 60m10s
		if c.X509Authorities().Prepared == nil || c.JWTAuthorities().Prepared == nil {
			t.Fatal("next authorities not prepared at the second half-life")
		}

		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run returned %v on cancel, want nil", err)
		}
	})
}

// TestInit_RestartKeepsAuthorities: with a disk KeyManager a restart brings
// back the same authorities, prepared ones included, and the bundle is
// byte-identical ("bundle show" does not change).
func TestInit_RestartKeepsAuthorities(t *testing.T) {
	ctx := context.Background()
	store := newTestStore(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	clock := newTestClock()
	start := func() *CA {
		km, err := NewDiskKeyManager(path)
		requireNoError(t, err)
		c, err := New(Config{TrustDomain: testTD, KeyManager: km, Store: store, Clock: clock.Now})
		requireNoError(t, err)
		requireNoError(t, c.Init(ctx))
		return c
	}
	c1 := start()
	_, err := c1.PrepareX509Authority(ctx)
	requireNoError(t, err)
	_, err = c1.PrepareJWTAuthority(ctx)
	requireNoError(t, err)
	before, err := store.FetchBundle(ctx, testTD.IDString())
	requireNoError(t, err)
	x1, j1 := c1.X509Authorities(), c1.JWTAuthorities()

	clock.Add(time.Hour)
	c2 := start()
	after, err := store.FetchBundle(ctx, testTD.IDString())
	requireNoError(t, err)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("bundle changed across restart:\nbefore %+v\nafter  %+v", before, after)
	}
	if x2, j2 := c2.X509Authorities(), c2.JWTAuthorities(); !reflect.DeepEqual(x1, x2) || !reflect.DeepEqual(j1, j2) {
		t.Fatalf("authorities changed across restart: %+v %+v -> %+v %+v", x1, j1, x2, j2)
	}
	key := newECKey(t)
	chain := signSVID(t, c2, "spiffe://example.org/w", &key.PublicKey)
	if AuthorityIDFromSKID(chain[0].AuthorityKeyId) != x1.Active.AuthorityID {
		t.Fatal("restarted CA signs with another key")
	}
}

// TestInit_Journal: what Init does with the journal it finds. An authority
// whose key is gone or differs, whose certificate or key ID is not in the
// bundle (a restored or tampered datastore, T16), or that expired is not
// used: a new one is created and published. A journal that does not decode
// stops Init.
func TestInit_Journal(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		tamper  func(t *testing.T, env *testEnv) KeyManager // returns the KeyManager of the restarted CA
		sameCA  bool
		sameJWT bool
		msg     string
	}{
		{name: "ok/unchanged", tamper: func(_ *testing.T, env *testEnv) KeyManager { return env.km }, sameCA: true, sameJWT: true},
		{name: "ok/keys lost (memory key manager restart)", tamper: func(*testing.T, *testEnv) KeyManager { return NewMemoryKeyManager() }},
		{name: "ok/key replaced", tamper: func(t *testing.T, env *testEnv) KeyManager {
			_, err := env.km.GenerateKey(ctx, "x509-CA-A", "")
			requireNoError(t, err)
			return env.km
		}, sameJWT: true},
		{name: "ok/T16 CA not in bundle", tamper: func(t *testing.T, env *testEnv) KeyManager {
			_, err := env.store.UpdateBundleFunc(ctx, testTD.IDString(), func(b *datastore.Bundle) error { b.X509Authorities = nil; return nil })
			requireNoError(t, err)
			return env.km
		}, sameJWT: true},
		{name: "ok/T16 JWT key not in bundle", tamper: func(t *testing.T, env *testEnv) KeyManager {
			_, err := env.store.UpdateBundleFunc(ctx, testTD.IDString(), func(b *datastore.Bundle) error { b.JWTAuthorities = nil; return nil })
			requireNoError(t, err)
			return env.km
		}, sameCA: true},
		{name: "ok/expired", tamper: func(_ *testing.T, env *testEnv) KeyManager { env.clock.Add(25 * time.Hour); return env.km }},
		{name: "fail/T16 corrupt journal", tamper: func(t *testing.T, env *testEnv) KeyManager {
			requireNoError(t, env.store.SetCAJournal(ctx, "server", []byte(`{"version":1,"x509_cas":[{`)))
			return env.km
		}, msg: "ca: decode journal"},
		{name: "fail/unknown journal version", tamper: func(t *testing.T, env *testEnv) KeyManager {
			requireNoError(t, env.store.SetCAJournal(ctx, "server", []byte(`{"version":9}`)))
			return env.km
		}, msg: "journal version 9 is not supported"},
		{name: "fail/journal unreadable", tamper: func(_ *testing.T, env *testEnv) KeyManager {
			env.store.failNext("FetchCAJournal", errors.New("disk on fire"))
			return env.km
		}, msg: "read journal: disk on fire"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, nil)
			x1, j1 := env.ca.X509Authorities().Active, env.ca.JWTAuthorities().Active
			km := tt.tamper(t, env)
			c, err := New(Config{TrustDomain: testTD, KeyManager: km, Store: env.store, Clock: env.clock.Now})
			requireNoError(t, err)
			err = c.Init(ctx)
			if tt.msg != "" {
				requireErr(t, err, nil, tt.msg)
				return
			}
			requireNoError(t, err)
			x2, j2 := c.X509Authorities().Active, c.JWTAuthorities().Active
			if (x1.AuthorityID == x2.AuthorityID) != tt.sameCA || (j1.AuthorityID == j2.AuthorityID) != tt.sameJWT {
				t.Fatalf("X.509 %s -> %s (same want %v), JWT %s -> %s (same want %v)", x1.AuthorityID, x2.AuthorityID, tt.sameCA, j1.AuthorityID, j2.AuthorityID, tt.sameJWT)
			}
			b := env.bundle(t) // FD-01: whatever is active is published
			if !bundleHasJWTKey(b, j2.AuthorityID) || !bundleHasX509(b, c.signX509.Load().cert.Raw) {
				t.Fatal("FD-01: active authority missing from the bundle")
			}
		})
	}
}

// TestInit_PreparedOnlyJournal: a journal whose active entry is unusable
// but which holds a prepared authority activates the prepared one.
func TestInit_PreparedOnlyJournal(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	p, err := env.ca.PrepareX509Authority(ctx)
	requireNoError(t, err)
	data, err := env.store.FetchCAJournal(ctx, "server")
	requireNoError(t, err)
	var j journal
	requireNoError(t, json.Unmarshal(data, &j))
	j.X509CAs = j.X509CAs[1:] // drop the ACTIVE entry
	data, err = json.Marshal(j)
	requireNoError(t, err)
	requireNoError(t, env.store.SetCAJournal(ctx, "server", data))
	c, err := New(Config{TrustDomain: testTD, KeyManager: env.km, Store: env.store, Clock: env.clock.Now})
	requireNoError(t, err)
	requireNoError(t, c.Init(ctx))
	if got := c.X509Authorities(); got.Active.AuthorityID != p.AuthorityID || got.Prepared != nil || got.Old != nil {
		t.Fatalf("slots %+v, want the prepared CA active", got)
	}
}

// TestInit_RestartPastActivation: restarting after the activation time
// activates the prepared authority at once.
func TestInit_RestartPastActivation(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	a := env.ca.X509Authorities().Active
	env.clock.Add(13 * time.Hour)
	requireNoError(t, env.ca.rotateLocked(ctx, env.clock.Now()))
	p := env.ca.X509Authorities().Prepared
	if p == nil {
		t.Fatal("not prepared at 13h")
	}
	env.clock.Add(8 * time.Hour) // 21h: past 5/6 of 24h
	c, err := New(Config{TrustDomain: testTD, KeyManager: env.km, Store: env.store, Clock: env.clock.Now})
	requireNoError(t, err)
	requireNoError(t, c.Init(ctx))
	if got := c.X509Authorities(); got.Active.AuthorityID != p.AuthorityID || got.Old.AuthorityID != a.AuthorityID {
		t.Fatalf("slots %+v, want prepared active and the first old", got)
	}
}

// TestInit_PublishFailure: when the bundle cannot be written, Init fails and
// nothing signs (FD-01: never use an unpublished authority).
func TestInit_PublishFailure(t *testing.T) {
	store := newFaultyStore(newTestStore(t))
	store.failNext("AppendBundle", errors.New("db down"))
	c, err := New(Config{TrustDomain: testTD, KeyManager: NewMemoryKeyManager(), Store: store})
	requireNoError(t, err)
	requireErr(t, c.Init(context.Background()), nil, "publish X509 CA in bundle: db down")
	if c.X509Authorities().Active != nil || c.signX509.Load() != nil {
		t.Fatal("FD-01: a CA that is not in the bundle is active")
	}
	if _, err := c.SignX509SVID(context.Background(), X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), PublicKey: &newECKey(t).PublicKey}); !errors.Is(err, ErrNoActiveAuthority) {
		t.Fatalf("signing with an unpublished CA: %v", err)
	}
}
