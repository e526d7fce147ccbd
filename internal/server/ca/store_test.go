package ca

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// memStore is a small in-memory Store with the datastore's documented
// semantics (AppendBundle dedupes by DER and key ID, SequenceNumber bumps on
// every content change, UpdateBundleFunc is read-modify-write, ErrNotFound).
type memStore struct {
	mu      sync.Mutex
	bundles map[string]*datastore.Bundle
	journal map[string][]byte
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{bundles: map[string]*datastore.Bundle{}, journal: map[string][]byte{}}
}

func cloneBundle(b *datastore.Bundle) *datastore.Bundle {
	n := *b
	n.X509Authorities = nil
	for _, a := range b.X509Authorities {
		n.X509Authorities = append(n.X509Authorities, datastore.X509Authority{Certificate: bytes.Clone(a.Certificate), Tainted: a.Tainted})
	}
	n.JWTAuthorities = nil
	for _, a := range b.JWTAuthorities {
		a.PublicKey = bytes.Clone(a.PublicKey)
		n.JWTAuthorities = append(n.JWTAuthorities, a)
	}
	return &n
}

func (s *memStore) FetchCAJournal(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.journal[key]
	if !ok {
		return nil, datastore.ErrNotFound
	}
	return bytes.Clone(d), nil
}

func (s *memStore) SetCAJournal(_ context.Context, key string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.journal[key] = bytes.Clone(data)
	return nil
}

func (s *memStore) FetchBundle(_ context.Context, td string) (*datastore.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bundles[td]
	if !ok {
		return nil, datastore.ErrNotFound
	}
	return cloneBundle(b), nil
}

func (s *memStore) AppendBundle(_ context.Context, in *datastore.Bundle) (*datastore.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bundles[in.TrustDomain]
	if !ok {
		b = &datastore.Bundle{TrustDomain: in.TrustDomain, SequenceNumber: 1}
		s.bundles[in.TrustDomain] = b
	}
	changed := false
	for _, a := range in.X509Authorities {
		if !slices.ContainsFunc(b.X509Authorities, func(x datastore.X509Authority) bool { return bytes.Equal(x.Certificate, a.Certificate) }) {
			b.X509Authorities = append(b.X509Authorities, datastore.X509Authority{Certificate: bytes.Clone(a.Certificate), Tainted: a.Tainted})
			changed = true
		}
	}
	for _, a := range in.JWTAuthorities {
		if !slices.ContainsFunc(b.JWTAuthorities, func(x datastore.JWTAuthority) bool { return x.KeyID == a.KeyID }) {
			a.PublicKey = bytes.Clone(a.PublicKey)
			b.JWTAuthorities = append(b.JWTAuthorities, a)
			changed = true
		}
	}
	if changed && ok {
		b.SequenceNumber++
	}
	return cloneBundle(b), nil
}

func (s *memStore) UpdateBundleFunc(_ context.Context, td string, fn func(*datastore.Bundle) error) (*datastore.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bundles[td]
	if !ok {
		return nil, fmt.Errorf("%w: bundle %q", datastore.ErrNotFound, td)
	}
	n := cloneBundle(b)
	if err := fn(n); err != nil {
		return nil, err
	}
	n.TrustDomain = b.TrustDomain
	n.SequenceNumber = b.SequenceNumber + 1
	s.bundles[td] = n
	return cloneBundle(n), nil
}

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
