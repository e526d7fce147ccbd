package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

var testTD = spiffeid.RequireTrustDomainFromString("example.org")

// newTestStore returns the store the CA tests run on: the real datastore
// on SQLite in a temp dir (STYLE X3).
func newTestStore(tb testing.TB) Store {
	tb.Helper()
	return datastoretest.OpenSQLite(tb)
}

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	// Real time, whole seconds: go-spiffe's JWT validator reads time.Now.
	return &testClock{now: time.Now().Truncate(time.Second).UTC()}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type testEnv struct {
	ca    *CA
	store *faultyStore
	km    KeyManager
	clock *testClock
	logs  *bytes.Buffer
}

// newTestEnv builds and initializes a CA on a fresh store, memory keys and
// a test clock; mod adjusts the config before New.
func newTestEnv(tb testing.TB, mod func(*Config)) *testEnv {
	tb.Helper()
	env := &testEnv{store: newFaultyStore(newTestStore(tb)), km: NewMemoryKeyManager(), clock: newTestClock(), logs: &bytes.Buffer{}}
	cfg := Config{
		TrustDomain: testTD,
		KeyManager:  env.km,
		Store:       env.store,
		Clock:       env.clock.Now,
		Logger:      slog.New(slog.NewTextHandler(&lockedWriter{w: env.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	env.km = cfg.KeyManager
	c, err := New(cfg)
	requireNoError(tb, err)
	requireNoError(tb, c.Init(context.Background()))
	env.ca = c
	return env
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (env *testEnv) bundle(tb testing.TB) *datastore.Bundle {
	tb.Helper()
	b, err := env.store.FetchBundle(context.Background(), testTD.IDString())
	requireNoError(tb, err)
	return b
}

func newECKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	requireNoError(tb, err)
	return k
}

func requireNoError(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("unexpected error: %v", err)
	}
}

// requireErr checks err wraps target (when not nil) and contains msg.
func requireErr(tb testing.TB, err, target error, msg string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("expected error containing %q, got nil", msg)
	}
	if target != nil && !errors.Is(err, target) {
		tb.Fatalf("expected error wrapping %v, got %v", target, err)
	}
	if !strings.Contains(err.Error(), msg) {
		tb.Fatalf("expected error containing %q, got %q", msg, err.Error())
	}
}

func mustID(tb testing.TB, s string) spiffeid.ID {
	tb.Helper()
	id, err := spiffeid.FromString(s)
	requireNoError(tb, err)
	return id
}

func signSVID(tb testing.TB, c *CA, id string, pub crypto.PublicKey) []*x509.Certificate {
	tb.Helper()
	chain, err := c.SignX509SVID(context.Background(), X509SVIDParams{SPIFFEID: mustID(tb, id), PublicKey: pub})
	requireNoError(tb, err)
	return chain
}

func bigOne() *big.Int { return big.NewInt(1) }
