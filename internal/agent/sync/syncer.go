package sync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"golang.org/x/sync/errgroup"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// Defaults of SyncerConfig.
const (
	// DefaultPollInterval is how often the agent syncs when the server does
	// not push revisions (SPIRE's agent sync interval).
	DefaultPollInterval = 5 * time.Second
	// DefaultSyncInterval is the safety sync interval when push works.
	DefaultSyncInterval = 30 * time.Second
)

// Cache is what the Syncer feeds (*cache.Cache implements it).
type Cache interface {
	SetEntries(entries []*cache.Entry)
	SetSVIDs(svids map[string]*cache.X509SVID)
	SetBundle(b *spiffebundle.Bundle)
	RemoveBundle(td spiffeid.TrustDomain)
	// StaleEntries returns the entries that need an X509-SVID at now, most
	// urgent first.
	StaleEntries(now time.Time) []cache.StaleEntry
	// NextX509Rotation returns when the next entry becomes stale.
	NextX509Rotation() (time.Time, bool)
	// RefreshJWTSVIDs renews the cached JWT-SVIDs past half of their life.
	RefreshJWTSVIDs(ctx context.Context, now time.Time) error
	// NextJWTRefresh returns when the next cached JWT-SVID should be renewed.
	NextJWTRefresh() (time.Time, bool)
}

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	// Client is the initialized server client. Required.
	Client *Client
	// Cache receives entries, SVIDs and bundles. Required.
	Cache Cache
	// Logger receives the syncer's logs. Nil: discarded.
	Logger *slog.Logger
	// Rand jitters retry delays. Nil: seeded from the runtime.
	Rand *rand.Rand
	// PollInterval is the sync period against a server without push.
	// Zero: DefaultPollInterval.
	PollInterval time.Duration
	// SyncInterval is the safety sync period while push works. Zero:
	// DefaultSyncInterval.
	SyncInterval time.Duration
	// BatchSize bounds the CSRs of one BatchNewX509SVID call. Zero:
	// DefaultBatchSize.
	BatchSize int
	// WorkloadKeyType is the key type of workload X509-SVIDs: KeyTypeECP256
	// (the default when empty) or KeyTypeRSA2048.
	WorkloadKeyType string
}

// Syncer is the agent's sync loop. Run it once; Trigger and Synced are safe
// for concurrent use.
type Syncer struct {
	client    *Client
	cache     Cache
	log       *slog.Logger
	jitter    *jitter
	poll      time.Duration
	interval  time.Duration
	batchSize int
	keyType   string

	trigger    chan struct{}
	synced     chan struct{}
	syncedOnce sync.Once
	metrics    Metrics
	// announced is the latest revision the server pushed; pendingSince the
	// time (unix ns) of the first push not yet applied, 0 when none.
	announced    atomic.Int64
	pendingSince atomic.Int64

	// Owned by the sync loop.
	entries          map[string]*types.Entry
	useGetAuthorized bool
	federated        map[spiffeid.TrustDomain]struct{}
	// chains holds, by entry ID, the key IDs the entry's SVID chains to.
	chains map[string][]string
	// taintHandled holds the subject key IDs of tainted authorities whose
	// SVIDs were rotated.
	taintHandled map[string]struct{}
}

// NewSyncer checks cfg and returns a Syncer.
func NewSyncer(cfg SyncerConfig) (*Syncer, error) {
	if cfg.Client == nil {
		return nil, wrapErr(errors.New("client is required"))
	}
	if cfg.Cache == nil {
		return nil, wrapErr(errors.New("cache is required"))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	switch cfg.WorkloadKeyType {
	case "":
		cfg.WorkloadKeyType = KeyTypeECP256
	case KeyTypeECP256, KeyTypeRSA2048:
	default:
		return nil, wrapErr(fmt.Errorf("unknown workload key type %q", cfg.WorkloadKeyType))
	}
	return &Syncer{
		client:       cfg.Client,
		cache:        cfg.Cache,
		log:          cfg.Logger,
		jitter:       newJitter(cfg.Rand),
		poll:         cfg.PollInterval,
		interval:     cfg.SyncInterval,
		batchSize:    cfg.BatchSize,
		keyType:      cfg.WorkloadKeyType,
		metrics:      cfg.Client.metrics,
		trigger:      make(chan struct{}, 1),
		synced:       make(chan struct{}),
		entries:      make(map[string]*types.Entry),
		federated:    make(map[spiffeid.TrustDomain]struct{}),
		chains:       make(map[string][]string),
		taintHandled: make(map[string]struct{}),
	}, nil
}

// Trigger asks for a sync as soon as possible; triggers that arrive while
// one is pending coalesce.
func (s *Syncer) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Synced is closed after the first successful sync.
func (s *Syncer) Synced() <-chan struct{} { return s.synced }

// Run syncs until ctx ends (nil) or the server refuses the agent (an error
// wrapping ErrAgentRefused). It watches the server's pushed revisions, or
// polls every PollInterval when the server does not push, and retries
// failures with backoff; the cache keeps what it has meanwhile.
func (s *Syncer) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		t := &task{
			do:      s.syncOnce,
			trigger: s.trigger,
			fatal:   func(err error) bool { return errors.Is(err, ErrAgentRefused) },
			backoff: newRetryBackoff(500*time.Millisecond, 30*time.Second, s.jitter),
			failed: func(err error, retry time.Duration) {
				s.log.Error("Synchronize failed", telemetry.Error, err, telemetry.RetryInterval, retry)
				s.client.reconnectNow()
			},
		}
		return t.run(ctx, time.Time{})
	})
	g.Go(func() error { return s.watch(ctx) })
	g.Go(func() error {
		t := &task{
			do:      s.refreshJWTs,
			backoff: newRetryBackoff(time.Second, 30*time.Second, s.jitter),
			failed: func(err error, retry time.Duration) {
				s.log.Warn("Could not refresh JWT-SVIDs", telemetry.Error, err, telemetry.RetryInterval, retry)
			},
		}
		return t.run(ctx, time.Now().Add(jwtCheckInterval))
	})
	return g.Wait()
}

// syncOnce is one sync: entries, bundles, X509-SVIDs. It returns when the
// next sync is due.
func (s *Syncer) syncOnce(ctx context.Context) (next time.Time, err error) {
	rev := s.announced.Load()
	since := s.pendingSince.Swap(0)
	defer func() {
		if err != nil && since != 0 {
			s.pendingSince.CompareAndSwap(0, since)
		}
	}()
	if err := s.fetchEntries(ctx); err != nil {
		return time.Time{}, s.refusal(ctx, err, true)
	}
	entries, federated := s.cacheEntries()

	own, feds, err := s.client.fetchBundles(ctx, federated)
	if err != nil {
		return time.Time{}, s.refusal(ctx, err, false)
	}
	if err := s.client.setBundle(own.bundle.X509Authorities()); err != nil {
		return time.Time{}, err
	}
	s.cache.SetBundle(own.bundle)
	for td, b := range feds {
		s.cache.SetBundle(b.bundle)
		s.federated[td] = struct{}{}
	}
	for td := range s.federated {
		if _, ok := feds[td]; !ok {
			s.cache.RemoveBundle(td)
			delete(s.federated, td)
		}
	}
	s.cache.SetEntries(entries)
	for id := range s.chains {
		if _, ok := s.entries[id]; !ok {
			delete(s.chains, id)
		}
	}
	if err := s.rotateTainted(ctx, entries, own.taintedX509); err != nil {
		return time.Time{}, s.refusal(ctx, err, false)
	}

	now := time.Now()
	signed, err := s.signStale(ctx, now)
	if signed > 0 {
		s.log.Info("Signed X509-SVIDs", telemetry.Count, signed)
	}
	if err != nil {
		return time.Time{}, s.refusal(ctx, err, false)
	}
	s.syncedOnce.Do(func() { close(s.synced) })
	now = time.Now()
	s.metrics.SyncCompleted(rev, now)
	if since != 0 {
		s.metrics.ObservePropagation(now.Sub(time.Unix(0, since)))
	}

	rot, rotOK := s.cache.NextX509Rotation()
	return nextSync(now, s.interval, s.poll, due{rot, rotOK}), nil
}

// jwtCheckInterval bounds how late a JWT-SVID cached after the last check
// is noticed; a check without a due token makes no call.
const jwtCheckInterval = time.Second

// refreshJWTs renews the cached JWT-SVIDs past half of their lifetime, so
// workloads get fresh tokens without waiting on the server, and returns
// when to look again: at the next half-life, at most jwtCheckInterval
// later.
func (s *Syncer) refreshJWTs(ctx context.Context) (time.Time, error) {
	now := time.Now()
	if next, ok := s.cache.NextJWTRefresh(); ok && !now.Before(next) {
		if err := s.cache.RefreshJWTSVIDs(ctx, now); err != nil {
			return time.Time{}, err
		}
	}
	next, ok := s.cache.NextJWTRefresh()
	return nextSync(time.Now(), jwtCheckInterval, s.poll, due{next, ok}), nil
}

// refusal turns a refusal of the server into the error that ends Run, or
// into nil (sync again now) when the agent recovered by attesting again.
// aboutAgent marks RPCs whose PermissionDenied can only mean the agent
// itself is refused.
func (s *Syncer) refusal(ctx context.Context, err error, aboutAgent bool) error {
	rerr := s.client.recover(ctx, err)
	switch {
	case rerr == nil:
		s.Trigger()
		return nil
	case errors.Is(rerr, ErrAgentRefused):
		return rerr
	case aboutAgent:
		return s.client.refusedPlain(err)
	default:
		return err
	}
}

// cacheEntries converts the synced entries for the cache, leaving out
// malformed entries and store_svid entries (SVIDStore plugins are not
// supported; they are not served on the Workload API, as in SPIRE), and
// returns the federated trust domains they name, sorted.
func (s *Syncer) cacheEntries() ([]*cache.Entry, []spiffeid.TrustDomain) {
	out := make([]*cache.Entry, 0, len(s.entries))
	tds := make(map[spiffeid.TrustDomain]struct{})
	for _, pe := range s.entries {
		if pe.GetStoreSvid() {
			continue
		}
		e, err := cache.EntryFromProto(pe)
		if err != nil {
			s.log.Warn("Received malformed entry from the server", telemetry.EntryID, pe.GetId(), telemetry.Error, err)
			continue
		}
		for _, td := range e.FederatesWith {
			tds[td] = struct{}{}
		}
		out = append(out, e)
	}
	federated := make([]spiffeid.TrustDomain, 0, len(tds))
	for td := range tds {
		federated = append(federated, td)
	}
	slices.SortFunc(federated, func(a, b spiffeid.TrustDomain) int { return cmp.Compare(a.Name(), b.Name()) })
	return out, federated
}

// due is a time something wants a sync; ok is false when nothing does.
type due struct {
	at time.Time
	ok bool
}

// nextSync returns when the next sync runs: after interval, or earlier when
// something is due. Things already due (an entry whose signing failed) are
// retried after retry, not at once.
func nextSync(now time.Time, interval, retry time.Duration, dues ...due) time.Time {
	next := now.Add(interval)
	for _, d := range dues {
		if !d.ok {
			continue
		}
		at := d.at
		if !at.After(now) {
			at = now.Add(retry)
		}
		if at.Before(next) {
			next = at
		}
	}
	return next
}
