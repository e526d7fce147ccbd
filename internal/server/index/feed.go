package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Source is what the feed reads from the datastore.
type Source interface {
	ListEntries(ctx context.Context, req *datastore.ListEntriesRequest) ([]*datastore.Entry, string, error)
	ListNodeSelectors(ctx context.Context) (map[string][]datastore.Selector, error)
	LatestChangeSeq(ctx context.Context) (int64, error)
	ListChanges(ctx context.Context, afterSeq int64, limit int) ([]datastore.Change, error)
	FetchEntry(ctx context.Context, id string) (*datastore.Entry, error)
	GetNodeSelectors(ctx context.Context, spiffeID string) ([]datastore.Selector, error)
	FetchAttestedNode(ctx context.Context, spiffeID string) (*datastore.AttestedNode, error)
}

// Feed keeps an Index current from the datastore change log. Writers on this
// server call Poke after they commit so the change reaches agents at once;
// changes made by other servers are found by the periodic poll (or, on
// PostgreSQL, by a NOTIFY that the server turns into a Poke).
type Feed struct {
	idx    *Index
	src    Source
	log    *slog.Logger
	poll   time.Duration
	pokeC  chan struct{}
	loaded chan struct{}
}

// NewFeed returns a feed for idx. poll is the fallback interval (default 1s).
func NewFeed(idx *Index, src Source, log *slog.Logger, poll time.Duration) *Feed {
	if poll <= 0 {
		poll = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Feed{idx: idx, src: src, log: log, poll: poll, pokeC: make(chan struct{}, 1), loaded: make(chan struct{})}
}

// Poke asks the feed to read the change log now. It never blocks.
func (f *Feed) Poke() {
	select {
	case f.pokeC <- struct{}{}:
	default:
	}
}

// Loaded is closed once the initial load is done.
func (f *Feed) Loaded() <-chan struct{} { return f.loaded }

// Load reads every entry and node selector into the index.
func (f *Feed) Load(ctx context.Context) error {
	rev, err := f.src.LatestChangeSeq(ctx)
	if err != nil {
		return fmt.Errorf("index: read change sequence: %w", err)
	}
	var all []*datastore.Entry
	page := &datastore.Pagination{PageSize: 5000}
	for {
		entries, next, err := f.src.ListEntries(ctx, &datastore.ListEntriesRequest{Pagination: page})
		if err != nil {
			return fmt.Errorf("index: list entries: %w", err)
		}
		all = append(all, entries...)
		if next == "" || len(entries) == 0 {
			break
		}
		page = &datastore.Pagination{PageSize: 5000, Token: next}
	}
	sels, err := f.src.ListNodeSelectors(ctx)
	if err != nil {
		return fmt.Errorf("index: list node selectors: %w", err)
	}
	f.idx.Load(all, sels, rev)
	return nil
}

// Run loads the index, then applies the change log until ctx ends.
func (f *Feed) Run(ctx context.Context) error {
	if err := f.Load(ctx); err != nil {
		return err
	}
	close(f.loaded)
	t := time.NewTicker(f.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.pokeC:
		case <-t.C:
		}
		if err := f.catchUp(ctx); err != nil && !errors.Is(err, context.Canceled) {
			f.log.Warn("Failed to apply change log to the authorized-entry index", "error", err)
		}
	}
}

// CatchUp applies every change after the index's revision (exported for tests
// and for callers that need read-your-writes, like AttestAgent).
func (f *Feed) CatchUp(ctx context.Context) error { return f.catchUp(ctx) }

func (f *Feed) catchUp(ctx context.Context) error {
	for {
		after := f.idx.Revision()
		changes, err := f.src.ListChanges(ctx, after, 1000)
		if err != nil {
			return fmt.Errorf("index: list changes: %w", err)
		}
		if len(changes) == 0 {
			return nil
		}
		u := Update{Entries: map[string]*datastore.Entry{}, NodeSelectors: map[string][]datastore.Selector{}}
		for _, c := range changes {
			u.Revision = c.Seq
			switch c.Kind {
			case datastore.ChangeEntry:
				if _, done := u.Entries[c.ID]; done {
					continue
				}
				e, err := f.src.FetchEntry(ctx, c.ID)
				switch {
				case errors.Is(err, datastore.ErrNotFound):
					u.Entries[c.ID] = nil
				case err != nil:
					return fmt.Errorf("index: fetch entry: %w", err)
				default:
					u.Entries[c.ID] = e
				}
			case datastore.ChangeNode:
				if _, done := u.NodeSelectors[c.ID]; done {
					continue
				}
				if _, err := f.src.FetchAttestedNode(ctx, c.ID); errors.Is(err, datastore.ErrNotFound) {
					u.NodeSelectors[c.ID] = nil
					continue
				}
				sels, err := f.src.GetNodeSelectors(ctx, c.ID)
				if err != nil && !errors.Is(err, datastore.ErrNotFound) {
					return fmt.Errorf("index: node selectors: %w", err)
				}
				if sels == nil {
					sels = []datastore.Selector{}
				}
				u.NodeSelectors[c.ID] = sels
			case datastore.ChangeBundle:
				u.BundleChanged = true
			}
		}
		f.idx.Update(u)
	}
}
