package ca

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// laStep is one localauthority call in a scripted sequence, with SPIRE's
// outcome (spire-reference/outputs/localauthority_{x509,jwt}_*).
type laStep struct {
	name string
	call func(ctx context.Context, c *CA, ids map[string]string) (*AuthorityInfo, error)
	kind error  // the sentinel the refusal wraps
	msg  string // AuthorityError.Message; "" = success
	want string // on success, which ID the result names ("active", "prepared", "old", ...)
	// zeroExpiry: the result reports expiry 0, as SPIRE's revoke (and JWT taint).
	zeroExpiry bool
}

func byID(op func(*CA, context.Context, string) (*AuthorityInfo, error), which string) func(context.Context, *CA, map[string]string) (*AuthorityInfo, error) {
	return func(ctx context.Context, c *CA, ids map[string]string) (*AuthorityInfo, error) {
		return op(c, ctx, ids[which])
	}
}

func literal(op func(*CA, context.Context, string) (*AuthorityInfo, error), id string) func(context.Context, *CA, map[string]string) (*AuthorityInfo, error) {
	return func(ctx context.Context, c *CA, _ map[string]string) (*AuthorityInfo, error) { return op(c, ctx, id) }
}

// runLocalAuthority runs steps on a fresh CA. ids tracks "active",
// "prepared" and "old" after every step. Every refusal must leave the
// bundle and the slots as they were (STYLE X7).
func runLocalAuthority(t *testing.T, slots func(*CA) Slots, prepare func(*CA, context.Context) (*AuthorityInfo, error), steps []laStep) {
	env := newTestEnv(t, nil)
	ctx := context.Background()
	ids := map[string]string{}
	refresh := func() {
		s := slots(env.ca)
		for k, v := range map[string]*AuthorityInfo{"active": s.Active, "prepared": s.Prepared, "old": s.Old} {
			if v != nil {
				ids[k] = v.AuthorityID
			} else {
				delete(ids, k)
			}
		}
	}
	refresh()
	ids["first"] = ids["active"]
	for _, st := range steps {
		if st.call == nil { // prepare
			st.call = func(ctx context.Context, c *CA, _ map[string]string) (*AuthorityInfo, error) { return prepare(c, ctx) }
		}
		t.Run(st.name, func(t *testing.T) {
			beforeBundle, beforeSlots := env.bundle(t), slots(env.ca)
			expectID := ids[st.want]
			info, err := st.call(ctx, env.ca, ids)
			if st.msg != "" {
				if err == nil {
					t.Fatalf("want %q, got success %+v", st.msg, info)
				}
				ae, ok := errors.AsType[*AuthorityError](err)
				if !ok || ae.Message != st.msg {
					t.Fatalf("error %v, want AuthorityError %q", err, st.msg)
				}
				if !errors.Is(err, st.kind) {
					t.Fatalf("kind %v, want %v", ae.Kind, st.kind)
				}
				if !reflect.DeepEqual(beforeBundle, env.bundle(t)) || !reflect.DeepEqual(beforeSlots, slots(env.ca)) {
					t.Fatal("refusal changed the bundle or the slots")
				}
				return
			}
			requireNoError(t, err)
			refresh()
			if st.want == "prepared" || st.want == "active" {
				expectID = ids[st.want] // new authority
			}
			if info.AuthorityID != expectID {
				t.Fatalf("result %q, want the %s authority %q", info.AuthorityID, st.want, expectID)
			}
			if st.zeroExpiry != (info.ExpiresAt.Unix() == 0) {
				t.Fatalf("expires at %v (unix %d)", info.ExpiresAt, info.ExpiresAt.Unix())
			}
		})
	}
}

// TestX509LocalAuthority follows the reference run's X.509 rotation.
func TestX509LocalAuthority(t *testing.T) {
	prep := (*CA).PrepareX509Authority
	act, taint, revoke := (*CA).ActivateX509Authority, (*CA).TaintX509Authority, (*CA).RevokeX509Authority
	runLocalAuthority(t, (*CA).X509Authorities, prep, []laStep{
		{name: "fail/activate active, nothing prepared", call: byID(act, "active"), kind: ErrInvalidAuthorityID, msg: "unexpected authority ID"},
		{name: "fail/taint active", call: byID(taint, "active"), kind: ErrInvalidAuthorityID, msg: "unable to taint current local authority"},
		{name: "fail/revoke active", call: byID(revoke, "active"), kind: ErrInvalidAuthorityID, msg: "invalid authority ID: unable to use current authority"},
		{name: "fail/activate no ID", call: literal(act, ""), kind: ErrInvalidAuthorityID, msg: "no authority ID provided"},
		{name: "fail/taint no ID", call: literal(taint, ""), kind: ErrInvalidAuthorityID, msg: "no authority ID provided"},
		{name: "fail/revoke no ID", call: literal(revoke, ""), kind: ErrInvalidAuthorityID, msg: "invalid authority ID: no authority ID provided"},
		{name: "ok/prepare", want: "prepared"},
		{name: "fail/activate unknown", call: literal(act, "0000000000000000000000000000000000000000"), kind: ErrInvalidAuthorityID, msg: "unexpected authority ID"},
		{name: "fail/taint prepared", call: byID(taint, "prepared"), kind: ErrInvalidAuthorityID, msg: "only Old local authorities can be tainted"},
		{name: "fail/revoke prepared", call: byID(revoke, "prepared"), kind: ErrInvalidAuthorityID, msg: "invalid authority ID: only Old local authority can be revoked"},
		{name: "ok/activate prepared", call: byID(act, "prepared"), want: "active"},
		{name: "fail/activate old", call: byID(act, "old"), kind: ErrAuthorityState, msg: "only Prepared authorities can be activated"},
		{name: "fail/revoke untainted old", call: byID(revoke, "old"), kind: ErrAuthorityState, msg: "failed to revoke X.509 authority: it is not possible to revoke an untainted root CA"},
		{name: "ok/taint old", call: byID(taint, "old"), want: "old"},
		{name: "fail/taint already tainted", call: byID(taint, "old"), kind: ErrAuthorityState, msg: "failed to taint X.509 authority: root CA is already tainted"},
		{name: "fail/taint unknown", call: literal(taint, "0000000000000000000000000000000000000000"), kind: ErrInvalidAuthorityID, msg: "unexpected authority ID"},
		{name: "ok/revoke old", call: byID(revoke, "old"), want: "old", zeroExpiry: true},
		{name: "fail/revoke again", call: byID(revoke, "old"), kind: ErrAuthorityState, msg: "failed to revoke X.509 authority: no root CA found with provided subject key ID"},
		{name: "fail/taint revoked", call: byID(taint, "old"), kind: ErrAuthorityState, msg: "failed to taint X.509 authority: no ca found with provided subject key ID"},
		{name: "ok/prepare replaces old", want: "prepared"},
		{name: "ok/activate second", call: byID(act, "prepared"), want: "active"},
	})
}

// TestJWTLocalAuthority follows the reference run's JWT rotation.
func TestJWTLocalAuthority(t *testing.T) {
	prep := (*CA).PrepareJWTAuthority
	act, taint, revoke := (*CA).ActivateJWTAuthority, (*CA).TaintJWTAuthority, (*CA).RevokeJWTAuthority
	runLocalAuthority(t, (*CA).JWTAuthorities, prep, []laStep{
		{name: "fail/activate active, nothing prepared", call: byID(act, "active"), kind: ErrInvalidAuthorityID, msg: "unexpected authority ID"},
		{name: "fail/taint active", call: byID(taint, "active"), kind: ErrInvalidAuthorityID, msg: "unable to taint current local authority"},
		{name: "fail/revoke active", call: byID(revoke, "active"), kind: ErrInvalidAuthorityID, msg: "invalid authority ID: unable to use current authority"},
		{name: "fail/revoke no ID", call: literal(revoke, ""), kind: ErrInvalidAuthorityID, msg: "invalid authority ID: no authority ID provided"},
		{name: "fail/revoke unknown", call: literal(revoke, "nope"), kind: ErrInvalidAuthorityID, msg: "invalid authority ID: no JWT authority found with provided authority ID"},
		{name: "ok/prepare", want: "prepared"},
		{name: "fail/activate unknown", call: literal(act, "nope"), kind: ErrInvalidAuthorityID, msg: "unexpected authority ID"},
		{name: "fail/revoke prepared", call: byID(revoke, "prepared"), kind: ErrInvalidAuthorityID, msg: "invalid authority ID: unable to use a prepared key"},
		{name: "fail/taint prepared", call: byID(taint, "prepared"), kind: ErrInvalidAuthorityID, msg: "only Old local authorities can be tainted"},
		{name: "ok/activate prepared", call: byID(act, "prepared"), want: "active"},
		{name: "fail/revoke untainted old", call: byID(revoke, "old"), kind: ErrAuthorityState, msg: "failed to revoke JWT authority: it is not possible to revoke an untainted key"},
		{name: "ok/taint old", call: byID(taint, "old"), want: "old", zeroExpiry: true},
		{name: "fail/taint already tainted", call: byID(taint, "old"), kind: ErrAuthorityState, msg: "failed to taint JWT authority: key is already tainted"},
		{name: "fail/taint unknown", call: literal(taint, "nope"), kind: ErrInvalidAuthorityID, msg: "unexpected authority ID"},
		{name: "ok/revoke old", call: byID(revoke, "old"), want: "old", zeroExpiry: true},
		{name: "fail/revoke again", call: byID(revoke, "old"), kind: ErrAuthorityState, msg: "failed to revoke JWT authority: no JWT Key found with provided key ID"},
		{name: "ok/prepare replaces old", want: "prepared"},
	})
}

// TestLocalAuthority_TaintInBundle checks what taint and revoke do to the
// published bundle (TB-02: the sequence number moves on each change).
func TestLocalAuthority_TaintInBundle(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, nil)
	seq := env.bundle(t).SequenceNumber
	step := func(what string) {
		t.Helper()
		if n := env.bundle(t).SequenceNumber; n <= seq {
			t.Fatalf("TB-02: sequence %d after %s, was %d", n, what, seq)
		} else {
			seq = n
		}
	}
	first := env.ca.X509Authorities().Active.AuthorityID
	firstJWT := env.ca.JWTAuthorities().Active.AuthorityID
	_, err := env.ca.PrepareX509Authority(ctx)
	requireNoError(t, err)
	step("x509 prepare")
	p, err := env.ca.PrepareJWTAuthority(ctx)
	requireNoError(t, err)
	step("jwt prepare")
	_, err = env.ca.ActivateX509Authority(ctx, env.ca.X509Authorities().Prepared.AuthorityID)
	requireNoError(t, err)
	_, err = env.ca.ActivateJWTAuthority(ctx, p.AuthorityID)
	requireNoError(t, err)
	_, err = env.ca.TaintX509Authority(ctx, first)
	requireNoError(t, err)
	step("x509 taint")
	_, err = env.ca.TaintJWTAuthority(ctx, firstJWT)
	requireNoError(t, err)
	step("jwt taint")
	b := env.bundle(t)
	for _, a := range b.X509Authorities {
		if want := x509AuthorityID(a.Certificate) == first; a.Tainted != want {
			t.Fatalf("x509 authority %s tainted=%v", x509AuthorityID(a.Certificate), a.Tainted)
		}
	}
	for _, a := range b.JWTAuthorities {
		if want := a.KeyID == firstJWT; a.Tainted != want {
			t.Fatalf("jwt authority %s tainted=%v", a.KeyID, a.Tainted)
		}
	}
	_, err = env.ca.RevokeX509Authority(ctx, first)
	requireNoError(t, err)
	step("x509 revoke")
	_, err = env.ca.RevokeJWTAuthority(ctx, firstJWT)
	requireNoError(t, err)
	step("jwt revoke")
	b = env.bundle(t)
	if len(b.X509Authorities) != 1 || x509AuthorityID(b.X509Authorities[0].Certificate) == first ||
		len(b.JWTAuthorities) != 1 || b.JWTAuthorities[0].KeyID == firstJWT {
		t.Fatalf("revoked authorities still in the bundle: %+v", b)
	}
	// As SPIRE, the revoked authority stays in the old slot.
	if env.ca.X509Authorities().Old.AuthorityID != first || env.ca.JWTAuthorities().Old.AuthorityID != firstJWT {
		t.Fatal("old slot emptied by revoke")
	}
}

// TestLocalAuthority_Failures: store and journal failures fail the
// operation as Internal and change neither the slots nor the signing CA.
func TestLocalAuthority_Failures(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("db down")
	prepareX509 := func(t *testing.T, env *testEnv) string {
		p, err := env.ca.PrepareX509Authority(ctx)
		requireNoError(t, err)
		return p.AuthorityID
	}
	rotateX509 := func(t *testing.T, env *testEnv) string {
		first := env.ca.X509Authorities().Active.AuthorityID
		_, err := env.ca.ActivateX509Authority(ctx, prepareX509(t, env))
		requireNoError(t, err)
		return first
	}
	for _, tt := range []struct {
		name   string
		setup  func(t *testing.T, env *testEnv) string // returns the ID op uses
		method string                                  // store method that fails
		op     func(env *testEnv, id string) (*AuthorityInfo, error)
		msg    string
	}{
		{name: "fail/prepare x509 publish", method: "AppendBundle",
			op:  func(env *testEnv, _ string) (*AuthorityInfo, error) { return env.ca.PrepareX509Authority(ctx) },
			msg: "failed to prepare X.509 authority: ca: publish X509 CA in bundle: db down"},
		{name: "fail/prepare jwt journal", method: "SetCAJournal",
			op:  func(env *testEnv, _ string) (*AuthorityInfo, error) { return env.ca.PrepareJWTAuthority(ctx) },
			msg: "failed to prepare JWT authority: ca: write journal: db down"},
		{name: "fail/activate x509 journal", setup: prepareX509, method: "SetCAJournal",
			op:  func(env *testEnv, id string) (*AuthorityInfo, error) { return env.ca.ActivateX509Authority(ctx, id) },
			msg: "failed to activate X.509 authority: ca: write journal: db down"},
		{name: "fail/taint x509 store", setup: rotateX509, method: "UpdateBundleFunc",
			op:  func(env *testEnv, id string) (*AuthorityInfo, error) { return env.ca.TaintX509Authority(ctx, id) },
			msg: "failed to taint X.509 authority: db down"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, nil)
			var id string
			if tt.setup != nil {
				id = tt.setup(t, env)
			}
			x, j, signer, bundle := env.ca.X509Authorities(), env.ca.JWTAuthorities(), env.ca.signX509.Load(), env.bundle(t)
			env.store.failNext(tt.method, boom)
			info, err := tt.op(env, id)
			requireErr(t, err, boom, tt.msg)
			if info != nil {
				t.Fatal("failure returned a result")
			}
			if ae, ok := errors.AsType[*AuthorityError](err); !ok || ae.Kind != nil {
				t.Fatalf("want an Internal AuthorityError (no Kind), got %#v", err)
			}
			if !reflect.DeepEqual(x, env.ca.X509Authorities()) || !reflect.DeepEqual(j, env.ca.JWTAuthorities()) || signer != env.ca.signX509.Load() {
				t.Fatal("failed operation changed the slots or the signing CA")
			}
			if tt.method != "SetCAJournal" && !reflect.DeepEqual(bundle, env.bundle(t)) {
				t.Fatal("failed operation changed the bundle")
			}
		})
	}
}

// TestLocalAuthority_BeforeInit: every operation says the server is
// initializing (Unavailable) until Init.
func TestLocalAuthority_BeforeInit(t *testing.T) {
	c, err := New(Config{TrustDomain: testTD, KeyManager: NewMemoryKeyManager(), Store: newTestStore(t)})
	requireNoError(t, err)
	ctx := context.Background()
	for name, op := range map[string]func() (*AuthorityInfo, error){
		"x509 prepare":  func() (*AuthorityInfo, error) { return c.PrepareX509Authority(ctx) },
		"x509 activate": func() (*AuthorityInfo, error) { return c.ActivateX509Authority(ctx, "x") },
		"x509 taint":    func() (*AuthorityInfo, error) { return c.TaintX509Authority(ctx, "x") },
		"x509 revoke":   func() (*AuthorityInfo, error) { return c.RevokeX509Authority(ctx, "x") },
		"jwt prepare":   func() (*AuthorityInfo, error) { return c.PrepareJWTAuthority(ctx) },
		"jwt activate":  func() (*AuthorityInfo, error) { return c.ActivateJWTAuthority(ctx, "x") },
		"jwt taint":     func() (*AuthorityInfo, error) { return c.TaintJWTAuthority(ctx, "x") },
		"jwt revoke":    func() (*AuthorityInfo, error) { return c.RevokeJWTAuthority(ctx, "x") },
	} {
		t.Run("fail/"+name, func(t *testing.T) {
			_, err := op()
			requireErr(t, err, ErrNoActiveAuthority, "server is initializing")
		})
	}
	if s := c.X509Authorities(); s != (Slots{}) {
		t.Fatalf("slots before Init: %+v", s)
	}
}
