package ca

import (
	"context"
	"sync"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// faultyStore wraps a Store and fails the next call of a named method with
// a queued error (fake with error injection, STYLE X2).
type faultyStore struct {
	Store
	mu   sync.Mutex
	errs map[string][]error
	// onAppend, when set, observes every successful AppendBundle.
	onAppend func(*datastore.Bundle)
}

func newFaultyStore(s Store) *faultyStore { return &faultyStore{Store: s, errs: map[string][]error{}} }

// failNext makes the next call of method return err.
func (f *faultyStore) failNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = append(f.errs[method], err)
}

func (f *faultyStore) next(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.errs[method]
	if len(q) == 0 {
		return nil
	}
	f.errs[method] = q[1:]
	return q[0]
}

func (f *faultyStore) FetchCAJournal(ctx context.Context, key string) ([]byte, error) {
	if err := f.next("FetchCAJournal"); err != nil {
		return nil, err
	}
	return f.Store.FetchCAJournal(ctx, key)
}

func (f *faultyStore) SetCAJournal(ctx context.Context, key string, data []byte) error {
	if err := f.next("SetCAJournal"); err != nil {
		return err
	}
	return f.Store.SetCAJournal(ctx, key, data)
}

func (f *faultyStore) AppendBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error) {
	if err := f.next("AppendBundle"); err != nil {
		return nil, err
	}
	out, err := f.Store.AppendBundle(ctx, b)
	if err == nil && f.onAppend != nil {
		f.onAppend(out)
	}
	return out, err
}

func (f *faultyStore) UpdateBundleFunc(ctx context.Context, td string, fn func(*datastore.Bundle) error) (*datastore.Bundle, error) {
	if err := f.next("UpdateBundleFunc"); err != nil {
		return nil, err
	}
	return f.Store.UpdateBundleFunc(ctx, td, fn)
}

func (f *faultyStore) FetchBundle(ctx context.Context, td string) (*datastore.Bundle, error) {
	if err := f.next("FetchBundle"); err != nil {
		return nil, err
	}
	return f.Store.FetchBundle(ctx, td)
}
