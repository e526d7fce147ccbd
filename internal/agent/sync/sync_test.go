package sync_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/agent/nodeattest"
	"github.com/neural-hive/hive-identity/internal/agent/storage"
	"github.com/neural-hive/hive-identity/internal/agent/sync"
	"github.com/neural-hive/hive-identity/internal/agent/sync/servertest"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

var (
	_ sync.Cache   = (*cache.Cache)(nil)
	_ sync.Metrics = (*telemetry.AgentMetrics)(nil)
)

// agent is a Client, Syncer and Cache on one data directory.
type agent struct {
	client *sync.Client
	syncer *sync.Syncer
	cache  *cache.Cache
	store  *storage.Store
	logs   *logBuffer
}

type agentOpts struct {
	dataDir      string
	token        string
	attestor     nodeattest.Attestor
	memoryKeys   bool
	insecure     bool
	trustBundle  []*x509.Certificate
	pollInterval time.Duration
	syncInterval time.Duration
	batchSize    int
	initTimeout  time.Duration
	keyType      string
	attestOnce   bool
	metrics      sync.Metrics
}

// newAgent builds and initializes an agent against srv (Init included).
func newAgent(t *testing.T, srv *servertest.Server, o agentOpts) (*agent, error) {
	t.Helper()
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	store, err := storage.Open(o.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var km sync.KeyManager
	if o.memoryKeys {
		km = storage.NewMemoryKeyManager()
	} else if km, err = storage.NewDiskKeyManager(filepath.Join(o.dataDir, "keys")); err != nil {
		t.Fatal(err)
	}
	if o.attestor == nil && o.token != "" {
		o.attestor = nodeattest.NewJoinToken(o.token)
	}
	if o.trustBundle == nil && !o.insecure {
		o.trustBundle = srv.Bundle()
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client, err := sync.NewClient(sync.ClientConfig{
		ServerAddress:     srv.Addr(),
		TrustDomain:       td,
		TrustBundle:       o.trustBundle,
		InsecureBootstrap: o.insecure,
		Attestor:          o.attestor,
		Store:             store,
		KeyManager:        km,
		Logger:            log,
		RPCTimeout:        5 * time.Second,
		AttestOnce:        o.attestOnce,
		Metrics:           o.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	c, err := cache.New(cache.Config{TrustDomain: td, JWTSigner: client, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if o.initTimeout == 0 {
		o.initTimeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(t.Context(), o.initTimeout)
	defer cancel()
	if err := client.Init(ctx); err != nil {
		return &agent{client: client, store: store, logs: logs}, err
	}
	syncer, err := sync.NewSyncer(sync.SyncerConfig{
		Client:          client,
		Cache:           c,
		Logger:          log,
		PollInterval:    o.pollInterval,
		SyncInterval:    o.syncInterval,
		BatchSize:       o.batchSize,
		WorkloadKeyType: o.keyType,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &agent{client: client, syncer: syncer, cache: c, store: store, logs: logs}, nil
}

// run runs the client's renewal and the syncer until the test ends; the
// returned channel gets Run's result.
func (a *agent) run(t *testing.T) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 2)
	go func() { done <- a.client.Run(ctx) }()
	go func() { done <- a.syncer.Run(ctx) }()
	out := make(chan error, 1)
	go func() {
		err := <-done
		cancel()
		if err2 := <-done; err == nil {
			err = err2
		}
		out <- err
		close(out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-out:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return out
}

// waitFor waits until the workload with selectors sees an update that
// satisfies ok, using the cache's own notifications.
func waitFor(t *testing.T, c *cache.Cache, selectors []string, ok func(*cache.Update) bool) *cache.Update {
	t.Helper()
	sub := c.Subscribe(selectors)
	defer sub.Close()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case <-sub.Updates():
			if u := sub.Latest(); ok(u) {
				return u
			}
		case <-timeout:
			t.Fatalf("timed out waiting for the cache; latest update: %+v", sub.Latest())
		}
	}
}

func ids(u *cache.Update) []string {
	var out []string
	for _, id := range u.Identities {
		out = append(out, id.Entry.ID)
	}
	return out
}

func hasIDs(want ...string) func(*cache.Update) bool {
	return func(u *cache.Update) bool { return slices.Equal(ids(u), want) }
}

var uid1000 = []string{"unix:uid:1000"}

func TestAttestStoreAndRestartWithoutReattest(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok-1")
	dir := t.TempDir()

	a, err := newAgent(t, srv, agentOpts{dataDir: dir, token: "tok-1"})
	if err != nil {
		t.Fatal(err)
	}
	wantID := spiffeid.RequireFromPath(td, "/spire/agent/join_token/tok-1")
	if a.client.ID() != wantID {
		t.Fatalf("agent ID = %v, want %v", a.client.ID(), wantID)
	}
	chain, _, err := a.store.SVID()
	if err != nil || !chain[0].Equal(a.client.SVID().Certificates[0]) {
		t.Fatalf("stored SVID = %v, %v", chain, err)
	}
	bundle, err := a.store.Bundle()
	if err != nil || !bundle[0].Equal(srv.CA.Root) {
		t.Fatalf("stored bundle = %v, %v", bundle, err)
	}
	_ = a.client.Close()

	// Restart on the same data dir: the token is used up, yet the agent
	// comes back with its stored SVID and no attestation.
	b, err := newAgent(t, srv, agentOpts{dataDir: dir, token: "tok-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Calls("AttestAgent"); got != 1 {
		t.Fatalf("AttestAgent calls = %d, want 1", got)
	}
	if b.client.ID() != wantID || !b.client.SVID().Certificates[0].Equal(chain[0]) {
		t.Fatal("restarted agent does not use the stored SVID")
	}
	// And it works: the server accepts it for sync.
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	b.run(t)
	waitFor(t, b.cache, uid1000, hasIDs("e1"))
}

func TestAttestRefusals(t *testing.T) {
	t.Run("fail/token already used", func(t *testing.T) {
		srv := servertest.New(t, td, servertest.Options{})
		a, err := newAgent(t, srv, agentOpts{token: "unknown"})
		if !errors.Is(err, sync.ErrAgentRefused) || status.Code(err) != codes.PermissionDenied ||
			!strings.Contains(err.Error(), "join token does not exist or has already been used") {
			t.Fatalf("Init = %v, want a refusal", err)
		}
		if got := srv.Calls("AttestAgent"); got != 1 {
			t.Fatalf("AttestAgent calls = %d, want 1 (no retry of a refusal)", got)
		}
		if _, _, err := a.store.SVID(); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("an SVID was stored: %v", err)
		}
	})
	t.Run("fail/wrong bootstrap bundle", func(t *testing.T) {
		srv := servertest.New(t, td, servertest.Options{})
		srv.AddJoinToken("tok")
		other := servertest.NewCA(t, td)
		a, err := newAgent(t, srv, agentOpts{token: "tok", trustBundle: []*x509.Certificate{other.Root}, initTimeout: 2 * time.Second})
		if err == nil {
			t.Fatal("Init succeeded against a server the bundle does not trust")
		}
		if got := srv.Calls("AttestAgent"); got != 0 {
			t.Fatalf("AttestAgent calls = %d, want 0: the TLS handshake must fail first", got)
		}
		if !strings.Contains(a.logs.String(), "Node attestation failed; retrying") {
			t.Fatalf("no retry logged:\n%s", a.logs)
		}
	})
	t.Run("fail/server down with attest once", func(t *testing.T) {
		srv := servertest.New(t, td, servertest.Options{})
		srv.AddJoinToken("tok")
		srv.Stop()
		_, err := newAgent(t, srv, agentOpts{token: "tok", attestOnce: true})
		if err == nil || errors.Is(err, sync.ErrAgentRefused) || status.Code(err) != codes.Unavailable {
			t.Fatalf("Init = %v, want Unavailable without retry", err)
		}
	})
	t.Run("fail/empty token is not retried", func(t *testing.T) {
		srv := servertest.New(t, td, servertest.Options{})
		_, err := newAgent(t, srv, agentOpts{attestor: nodeattest.NewJoinToken("")})
		if err == nil || errors.Is(err, sync.ErrAgentRefused) || !strings.Contains(err.Error(), "join token is empty") {
			t.Fatalf("Init = %v", err)
		}
		if got := srv.Calls("AttestAgent"); got != 0 {
			t.Fatalf("AttestAgent calls = %d, want 0", got)
		}
	})
	t.Run("fail/no attestor and no SVID", func(t *testing.T) {
		srv := servertest.New(t, td, servertest.Options{})
		_, err := newAgent(t, srv, agentOpts{})
		if err == nil || !strings.Contains(err.Error(), "no node attestor configured") {
			t.Fatalf("Init = %v", err)
		}
	})
	t.Run("fail/memory keys do not survive a restart", func(t *testing.T) {
		srv := servertest.New(t, td, servertest.Options{})
		srv.AddJoinToken("tok")
		dir := t.TempDir()
		if _, err := newAgent(t, srv, agentOpts{dataDir: dir, token: "tok", memoryKeys: true}); err != nil {
			t.Fatal(err)
		}
		// The SVID is on disk but its key is gone: attest again, and the
		// used token is refused.
		_, err := newAgent(t, srv, agentOpts{dataDir: dir, token: "tok", memoryKeys: true})
		if !errors.Is(err, sync.ErrAgentRefused) {
			t.Fatalf("Init = %v, want a refusal", err)
		}
		if got := srv.Calls("AttestAgent"); got != 2 {
			t.Fatalf("AttestAgent calls = %d, want 2", got)
		}
	})
}

func TestInsecureBootstrap(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	a, err := newAgent(t, srv, agentOpts{token: "tok", insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := a.store.Bundle()
	if err != nil || len(bundle) != 1 || !bundle[0].Equal(srv.CA.Root) {
		t.Fatalf("stored bundle after insecure bootstrap = %v, %v", bundle, err)
	}
	if !strings.Contains(a.logs.String(), "Insecure bootstrap enabled") {
		t.Fatal("insecure bootstrap not logged")
	}
}

func TestSyncSignsInOneBatch(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	srv.SetEntries(
		servertest.Entry("e1", td, "/w1", "unix:uid:1000"),
		servertest.Entry("e2", td, "/w2", "unix:uid:1000"),
		servertest.Entry("e3", td, "/w3", "unix:uid:2000"),
	)
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	u := waitFor(t, a.cache, uid1000, hasIDs("e1", "e2"))
	<-a.syncer.Synced()

	batches := srv.Batches()
	if len(batches) != 1 || !slices.Equal(sorted(batches[0]), []string{"e1", "e2", "e3"}) {
		t.Fatalf("batches = %v, want one call with e1, e2, e3", batches)
	}
	// Each CSR carries the entry's SPIFFE ID and a key of its own.
	keys := map[string]bool{}
	for _, p := range srv.BatchParams()[0] {
		csr, err := x509.ParseCertificateRequest(p.GetCsr())
		if err != nil {
			t.Fatal(err)
		}
		if len(csr.URIs) != 1 || !strings.HasSuffix(csr.URIs[0].String(), "/w"+strings.TrimPrefix(p.GetEntryId(), "e")) {
			t.Fatalf("CSR of %s has URIs %v", p.GetEntryId(), csr.URIs)
		}
		keys[fmt.Sprint(csr.PublicKey)] = true
	}
	if len(keys) != 3 {
		t.Fatal("workload keys are shared between entries")
	}
	// The identities chain to the bundle and carry the entry's ID.
	for _, id := range u.Identities {
		chain, err := id.SVID.Certificates()
		if err != nil {
			t.Fatal(err)
		}
		leaf := chain[0]
		if leaf.URIs[0].String() != id.Entry.SPIFFEID.String() {
			t.Fatalf("SVID %v for entry %v", leaf.URIs[0], id.Entry.SPIFFEID)
		}
		pool := x509.NewCertPool()
		pool.AddCert(srv.CA.Root)
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("SVID does not chain to the bundle: %v", err)
		}
	}
	if u.Bundle == nil || !u.Bundle.X509Authorities()[0].Equal(srv.CA.Root) || len(u.Bundle.JWTAuthorities()) != 1 {
		t.Fatalf("bundle = %v", u.Bundle)
	}
}

func TestBatchSizeBound(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	for i := range 5 {
		srv.SetEntries(servertest.Entry(fmt.Sprintf("e%d", i), td, fmt.Sprintf("/w%d", i), "unix:uid:1000"))
	}
	a, err := newAgent(t, srv, agentOpts{token: "tok", batchSize: 2, syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e0", "e1", "e2", "e3", "e4"))
	var sizes []int
	for _, b := range srv.Batches() {
		sizes = append(sizes, len(b))
	}
	if !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Fatalf("batch sizes = %v, want [2 2 1]", sizes)
	}
}

func TestPushTriggersSync(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	// Polling and safety syncs are an hour away: only a push can sync.
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e1"))

	srv.SetEntries(servertest.Entry("e2", td, "/w2", "unix:uid:1000"))
	waitFor(t, a.cache, uid1000, hasIDs("e1", "e2"))

	// An update re-signs the entry (new revision), a deletion removes it.
	before := len(srv.Batches())
	e1 := servertest.Entry("e1", td, "/w1-renamed", "unix:uid:1000")
	srv.SetEntries(e1)
	waitFor(t, a.cache, uid1000, func(u *cache.Update) bool {
		return len(u.Identities) == 2 && u.Identities[0].Entry.SPIFFEID.Path() == "/w1-renamed" &&
			u.Identities[0].SVID.ID.Path() == "/w1-renamed"
	})
	if b := srv.Batches(); len(b) != before+1 || !slices.Equal(b[before], []string{"e1"}) {
		t.Fatalf("batches after update = %v, want one more with e1 only", b[before:])
	}
	srv.DeleteEntries("e2")
	waitFor(t, a.cache, uid1000, hasIDs("e1"))
	if got := srv.Calls("Watch"); got != 1 {
		t.Fatalf("Watch calls = %d, want 1 (one stream)", got)
	}
}

func TestPollFallbackWithoutPush(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{NoPush: true})
	srv.AddJoinToken("tok")
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	<-a.syncer.Synced()
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	waitFor(t, a.cache, uid1000, hasIDs("e1"))
	if n := strings.Count(a.logs.String(), "Server does not push changes; polling"); n != 1 {
		t.Fatalf("fallback to polling logged %d times, want once", n)
	}
}

func TestGetAuthorizedEntriesFallback(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{NoSyncAuthorizedEntries: true})
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	a, err := newAgent(t, srv, agentOpts{token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e1"))
	srv.SetEntries(servertest.Entry("e2", td, "/w2", "unix:uid:1000"))
	waitFor(t, a.cache, uid1000, hasIDs("e1", "e2"))
	if srv.Calls("SyncAuthorizedEntries") != 1 || srv.Calls("GetAuthorizedEntries") < 2 {
		t.Fatalf("Sync calls = %d, Get calls = %d; want 1 and >= 2", srv.Calls("SyncAuthorizedEntries"), srv.Calls("GetAuthorizedEntries"))
	}
}

func TestPagedSyncFetchesOnlyChangedEntries(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{EntryPageSize: 2})
	srv.AddJoinToken("tok")
	for i := range 5 {
		srv.SetEntries(servertest.Entry(fmt.Sprintf("e%d", i), td, fmt.Sprintf("/w%d", i), "unix:uid:1000"))
	}
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e0", "e1", "e2", "e3", "e4"))
	before := len(srv.Batches())
	srv.SetEntries(servertest.Entry("e3", td, "/w3b", "unix:uid:1000"))
	srv.DeleteEntries("e0")
	waitFor(t, a.cache, uid1000, func(u *cache.Update) bool {
		return slices.Equal(ids(u), []string{"e1", "e2", "e3", "e4"}) && u.Identities[2].Entry.SPIFFEID.Path() == "/w3b" &&
			u.Identities[2].SVID.ID.Path() == "/w3b"
	})
	for _, b := range srv.Batches()[before:] {
		if !slices.Equal(b, []string{"e3"}) {
			t.Fatalf("re-signed %v, want only e3", b)
		}
	}
}

func TestFederatedBundles(t *testing.T) {
	fedTD := spiffeid.RequireTrustDomainFromString("fed.example")
	missingTD := spiffeid.RequireTrustDomainFromString("missing.example")
	fedCA := servertest.NewCA(t, fedTD)
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	srv.SetFederatedBundle(fedTD, fedCA.Root)
	e := servertest.Entry("e1", td, "/w1", "unix:uid:1000")
	e.FederatesWith = []string{fedTD.Name(), missingTD.Name()}
	srv.SetEntries(e)
	a, err := newAgent(t, srv, agentOpts{token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	u := waitFor(t, a.cache, uid1000, func(u *cache.Update) bool { return len(u.FederatedBundles) == 1 })
	if b := u.FederatedBundles[fedTD]; b == nil || !b.X509Authorities()[0].Equal(fedCA.Root) {
		t.Fatalf("federated bundles = %v", u.FederatedBundles)
	}
	if !strings.Contains(a.logs.String(), "Federated bundle not found") {
		t.Fatal("missing federated bundle not logged")
	}
	// The entry stops federating: the bundle goes away.
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	waitFor(t, a.cache, uid1000, func(u *cache.Update) bool { return len(u.FederatedBundles) == 0 })
	if a.cache.Bundle(fedTD) != nil {
		t.Fatal("federated bundle kept after no entry federates with it")
	}
}

func TestServerDownKeepsCacheAndReconnects(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := a.run(t)
	u := waitFor(t, a.cache, uid1000, hasIDs("e1"))

	srv.Stop()
	a.syncer.Trigger()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.logs.String(), "Synchronize failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed sync logged:\n%s", a.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := a.cache.Snapshot(uid1000); !slices.Equal(ids(got), []string{"e1"}) || got.Identities[0].SVID != u.Identities[0].SVID {
		t.Fatalf("cache lost its SVID while the server is down: %v", ids(got))
	}
	select {
	case err := <-done:
		t.Fatalf("agent stopped while the server is down: %v", err)
	default:
	}

	// Back up (same port, same CA): the push stream reconnects, its first
	// revision triggers a sync, the new entry arrives.
	srv.SetEntries(servertest.Entry("e2", td, "/w2", "unix:uid:1000"))
	srv.Start()
	waitFor(t, a.cache, uid1000, hasIDs("e1", "e2"))
}

func TestBannedAgentStops(t *testing.T) {
	for _, tt := range []struct {
		name   string
		refuse func(*servertest.Server, spiffeid.ID)
		reason string
	}{
		{name: "fail/banned", refuse: (*servertest.Server).Ban, reason: "AGENT_BANNED"},
		{name: "fail/evicted", refuse: (*servertest.Server).Evict, reason: "AGENT_NOT_ATTESTED"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := servertest.New(t, td, servertest.Options{})
			srv.AddJoinToken("tok")
			srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
			a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			done := a.run(t)
			waitFor(t, a.cache, uid1000, hasIDs("e1"))

			tt.refuse(srv, a.client.ID())
			select {
			case err := <-done:
				if !errors.Is(err, sync.ErrAgentRefused) || !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("Run = %v, want a refusal with %s", err, tt.reason)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("agent kept running after it was refused")
			}
			if _, _, err := a.store.SVID(); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("stored SVID kept after refusal: %v", err)
			}
			if !strings.Contains(a.logs.String(), "removing SVID and shutting down") {
				t.Fatalf("refusal not logged:\n%s", a.logs)
			}
		})
	}
}

func TestAgentSVIDRenewal(t *testing.T) {
	// Agent SVIDs live 2 s: renewed every second. Each renewal swaps the
	// mTLS connection, and the server then only accepts the new serial.
	srv := servertest.New(t, td, servertest.Options{AgentTTL: 2 * time.Second})
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	first := a.client.SVID().Certificates[0]
	done := a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e1"))

	deadline := time.Now().Add(15 * time.Second)
	for srv.Calls("RenewAgent") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("RenewAgent calls = %d, want >= 2", srv.Calls("RenewAgent"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cur := a.client.SVID().Certificates[0]
	if cur.Equal(first) || a.client.ID() != spiffeid.RequireFromPath(td, "/spire/agent/join_token/tok") {
		t.Fatal("agent SVID not rotated")
	}
	stored, _, err := a.store.SVID()
	if err != nil {
		t.Fatal(err)
	}
	if stored[0].SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("renewed SVID not stored")
	}
	// Still authorized after the rotations: a pushed change is synced.
	srv.SetEntries(servertest.Entry("e2", td, "/w2", "unix:uid:1000"))
	waitFor(t, a.cache, uid1000, hasIDs("e1", "e2"))
	select {
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	default:
	}
	if srv.Calls("AttestAgent") != 1 {
		t.Fatalf("AttestAgent calls = %d, want 1", srv.Calls("AttestAgent"))
	}
}

// nodeAttestor attests as a reattestable test node.
type nodeAttestor struct{ name string }

func (n nodeAttestor) Type() string                                    { return servertest.ReattestType }
func (n nodeAttestor) Payload(context.Context) ([]byte, error)         { return []byte(n.name), nil }
func (n nodeAttestor) Respond(context.Context, []byte) ([]byte, error) { return nil, errors.New("no") }

func TestReattestableAgentReattests(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{AgentTTL: 2 * time.Second})
	srv.AddNode("node-1")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	a, err := newAgent(t, srv, agentOpts{attestor: nodeAttestor{name: "node-1"}, syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e1"))
	deadline := time.Now().Add(15 * time.Second)
	for srv.Calls("AttestAgent") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("AttestAgent calls = %d, want >= 3", srv.Calls("AttestAgent"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := srv.Calls("RenewAgent"); got != 0 {
		t.Fatalf("RenewAgent calls = %d, want 0 for a reattestable agent", got)
	}
	if _, reattestable, err := a.store.SVID(); err != nil || !reattestable {
		t.Fatalf("stored SVID reattestable = %v, %v", reattestable, err)
	}
	// Evicted: a reattestable agent attests again in place and keeps going.
	srv.Evict(a.client.ID())
	srv.SetEntries(servertest.Entry("e2", td, "/w2", "unix:uid:1000"))
	waitFor(t, a.cache, uid1000, hasIDs("e1", "e2"))
}

func TestJWTSVIDThroughServer(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	a, err := newAgent(t, srv, agentOpts{token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e1"))
	entry := a.cache.MatchingEntries(uid1000)[0]
	svid, err := a.cache.FetchJWTSVID(t.Context(), entry, []string{"aud1"})
	if err != nil {
		t.Fatal(err)
	}
	if svid.Token == "" || !svid.ExpiresAt.After(svid.IssuedAt) {
		t.Fatalf("JWT-SVID = %+v", svid)
	}
	// Cached: a second fetch does not call the server.
	if _, err := a.cache.FetchJWTSVID(t.Context(), entry, []string{"aud1"}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Calls("NewJWTSVID"); got != 1 {
		t.Fatalf("NewJWTSVID calls = %d, want 1", got)
	}
	// A refused entry yields the server's code.
	_, err = a.client.NewJWTSVID(t.Context(), &cache.Entry{ID: "nope", SPIFFEID: spiffeid.RequireFromPath(td, "/x")}, []string{"a"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("NewJWTSVID for an unknown entry = %v, want NotFound", err)
	}
}

func TestJWTSVIDsRefreshedAhead(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{JWTTTL: 2 * time.Second})
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e1"))
	entry := a.cache.MatchingEntries(uid1000)[0]
	first, err := a.cache.FetchJWTSVID(t.Context(), entry, []string{"aud1"})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody asks again, yet the token is renewed at each half-life, without
	// syncing entries: the only entry syncs are the first one and the one
	// the push stream's opening revision triggers.
	deadline := time.Now().Add(10 * time.Second)
	for srv.Calls("NewJWTSVID") < 3 {
		if time.Now().After(deadline) {
			t.Fatal("JWT-SVID not refreshed ahead of expiry")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := srv.Calls("SyncAuthorizedEntries"); got > 2 {
		t.Fatalf("%d entry syncs, want at most 2: JWT refreshes must not sync entries", got)
	}
	second, err := a.cache.FetchJWTSVID(t.Context(), entry, []string{"aud1"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Token == first.Token {
		t.Fatal("cache still serves the first token")
	}
}

func TestPerEntrySigningFailure(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	srv.FailNext("BatchNewX509SVID", status.Error(codes.ResourceExhausted, "rate limited"))
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := a.run(t)
	// The failed batch is retried with backoff and then succeeds.
	waitFor(t, a.cache, uid1000, hasIDs("e1"))
	if got := srv.Calls("BatchNewX509SVID"); got != 2 {
		t.Fatalf("BatchNewX509SVID calls = %d, want 2", got)
	}
	select {
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	default:
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestWorkloadKeyType(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	a, err := newAgent(t, srv, agentOpts{token: "tok", keyType: sync.KeyTypeRSA2048})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	u := waitFor(t, a.cache, uid1000, hasIDs("e1"))
	chain, err := u.Identities[0].SVID.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := chain[0].PublicKey.(*rsa.PublicKey); !ok {
		t.Fatalf("workload key is %T, want RSA", chain[0].PublicKey)
	}

	_, err = sync.NewSyncer(sync.SyncerConfig{Client: a.client, Cache: a.cache, WorkloadKeyType: "ec-p999"})
	if err == nil || !strings.Contains(err.Error(), `unknown workload key type "ec-p999"`) {
		t.Fatalf("NewSyncer with a bad key type = %v", err)
	}
}

// BenchmarkPushPropagation measures, per entry created on the server, the
// time until its X509-SVID is in the cache: push, delta sync, one batch.
func BenchmarkPushPropagation(b *testing.B) {
	srv := servertest.New(b, td, servertest.Options{})
	srv.AddJoinToken("tok")
	a := benchAgent(b, srv, "tok")
	a.runB(b)
	sub := a.cache.Subscribe(uid1000)
	defer sub.Close()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("e%d", i)
		srv.SetEntries(servertest.Entry(id, td, "/w"+id, "unix:uid:1000"))
		for {
			<-sub.Updates()
			if u := sub.Latest(); len(u.Identities) == i {
				break
			}
		}
	}
}

// BenchmarkFirstSync measures a fresh agent's first sync of 1,000 entries:
// entries, bundle, 1,000 workload keys and CSRs in two batches.
func BenchmarkFirstSync(b *testing.B) {
	srv := servertest.New(b, td, servertest.Options{})
	for i := range 1000 {
		srv.SetEntries(servertest.Entry(fmt.Sprintf("e%04d", i), td, fmt.Sprintf("/w%d", i), "unix:uid:1000"))
	}
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		tok := fmt.Sprintf("tok-%d", n)
		srv.AddJoinToken(tok)
		a := benchAgent(b, srv, tok)
		b.StartTimer()
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		go func() { done <- a.syncer.Run(ctx) }()
		<-a.syncer.Synced()
		b.StopTimer()
		cancel()
		<-done
		_ = a.client.Close()
		b.StartTimer()
	}
}

func benchAgent(b *testing.B, srv *servertest.Server, token string) *agent {
	b.Helper()
	store, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	client, err := sync.NewClient(sync.ClientConfig{
		ServerAddress: srv.Addr(),
		TrustDomain:   td,
		TrustBundle:   srv.Bundle(),
		Attestor:      nodeattest.NewJoinToken(token),
		Store:         store,
		KeyManager:    storage.NewMemoryKeyManager(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	c, err := cache.New(cache.Config{TrustDomain: td, JWTSigner: client})
	if err != nil {
		b.Fatal(err)
	}
	if err := client.Init(b.Context()); err != nil {
		b.Fatal(err)
	}
	syncer, err := sync.NewSyncer(sync.SyncerConfig{Client: client, Cache: c, SyncInterval: time.Hour, PollInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return &agent{client: client, syncer: syncer, cache: c, store: store}
}

func (a *agent) runB(b *testing.B) {
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- a.syncer.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
}

func TestTaintedAuthorityRotatesSVIDs(t *testing.T) {
	srv := servertest.New(t, td, servertest.Options{})
	srv.AddJoinToken("tok")
	srv.SetEntries(
		servertest.Entry("e1", td, "/w1", "unix:uid:1000"),
		servertest.Entry("e2", td, "/w2", "unix:uid:1000"),
	)
	a, err := newAgent(t, srv, agentOpts{token: "tok", syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e1", "e2"))

	next := srv.TaintAndRotate()
	signedByNext := func(u *cache.Update) bool {
		if len(u.Identities) != 2 {
			return false
		}
		for _, id := range u.Identities {
			if in := id.SVID.Intermediates(); len(in) == 0 || !in[0].Equal(next.Intermediate) {
				return false
			}
		}
		return true
	}
	waitFor(t, a.cache, uid1000, signedByNext)
	deadline := time.Now().Add(10 * time.Second)
	for !a.client.SVID().Certificates[1].Equal(next.Intermediate) {
		if time.Now().After(deadline) {
			t.Fatal("agent SVID not rotated away from the tainted authority")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := srv.Calls("RenewAgent"); got != 1 {
		t.Fatalf("RenewAgent calls = %d, want 1", got)
	}
	if b := srv.Batches(); len(b) != 2 || !slices.Equal(sorted(b[1]), []string{"e1", "e2"}) {
		t.Fatalf("batches = %v, want a second batch re-signing e1 and e2", b)
	}
	// The new bundle (both roots) is stored for the next start.
	stored, err := a.store.Bundle()
	if err != nil || len(stored) != 2 {
		t.Fatalf("stored bundle = %d certs, %v; want 2", len(stored), err)
	}
	// Handled once: later syncs do not rotate again.
	srv.SetEntries(servertest.Entry("e3", td, "/w3", "unix:uid:1000"))
	waitFor(t, a.cache, uid1000, hasIDs("e1", "e2", "e3"))
	if got := srv.Calls("RenewAgent"); got != 1 {
		t.Fatalf("RenewAgent calls = %d after a later sync, want 1", got)
	}
	select {
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	default:
	}
}

func TestMetrics(t *testing.T) {
	reg := telemetry.NewRegistry()
	m, err := telemetry.NewAgentMetrics(reg, telemetry.AgentSources{})
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.New(t, td, servertest.Options{})
	if _, err := newAgent(t, srv, agentOpts{token: "bad", metrics: m}); err == nil {
		t.Fatal("Init with a bad token succeeded")
	}
	srv.AddJoinToken("tok")
	srv.SetEntries(servertest.Entry("e1", td, "/w1", "unix:uid:1000"))
	a, err := newAgent(t, srv, agentOpts{token: "tok", metrics: m, syncInterval: time.Hour, pollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.run(t)
	waitFor(t, a.cache, uid1000, hasIDs("e1"))
	srv.SetEntries(servertest.Entry("e2", td, "/w2", "unix:uid:1000"))
	waitFor(t, a.cache, uid1000, hasIDs("e1", "e2"))

	values := map[string]float64{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, mm := range mf.GetMetric() {
				key := mf.GetName()
				for _, l := range mm.GetLabel() {
					key += "," + l.GetName() + "=" + l.GetValue()
				}
				switch {
				case mm.GetCounter() != nil:
					values[key] = mm.GetCounter().GetValue()
				case mm.GetGauge() != nil:
					values[key] = mm.GetGauge().GetValue()
				case mm.GetHistogram() != nil:
					values[key] = float64(mm.GetHistogram().GetSampleCount())
				}
			}
		}
		if values["spire_agent_sync_revision"] == float64(srv.Revision()) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := values["spire_agent_attestation_errors_total,attestor=join_token,reason=rejected,type=node"]; got != 1 {
		t.Fatalf("node attestation errors = %v, want 1 (metrics: %v)", got, values)
	}
	leaf := a.client.SVID().Certificates[0]
	if got := values["spire_agent_svid_expiry_timestamp_seconds"]; got != float64(leaf.NotAfter.Unix()) {
		t.Fatalf("agent SVID expiry = %v, want %v", got, leaf.NotAfter.Unix())
	}
	if got := values["spire_agent_sync_revision"]; got != float64(srv.Revision()) {
		t.Fatalf("sync revision = %v, want %v", got, srv.Revision())
	}
	if values["spire_agent_entry_propagation_seconds"] < 1 {
		t.Fatalf("no propagation observed: %v", values)
	}
}
