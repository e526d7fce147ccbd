package datastore

import (
	"errors"
	"fmt"
)

// Error is a refusal by the store: Kind is one of the sentinel errors
// (ErrNotFound, ErrAlreadyExists, ErrFailedPrecondition, ErrInvalidArgument)
// and Msg names the problem, in SPIRE's wording where SPIRE has one
// ("invalid registration entry: missing selector list"). Msg never holds SQL
// or driver text, so the API layer may forward it.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return "datastore: " + e.Msg }

// Unwrap returns Kind, so errors.Is(err, ErrNotFound) works.
func (e *Error) Unwrap() error { return e.Kind }

func newError(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// SimilarEntryError is returned by CreateEntry and CreateEntries when an entry
// with the same SPIFFE ID, parent ID and selector set exists. It wraps
// ErrAlreadyExists; Existing is that entry (SPIRE returns it beside
// "similar entry already exists").
type SimilarEntryError struct {
	Existing *Entry
}

func (e *SimilarEntryError) Error() string { return "datastore: similar entry already exists" }

// Unwrap returns ErrAlreadyExists.
func (e *SimilarEntryError) Unwrap() error { return ErrAlreadyExists }

// MissingBundleError is returned when an entry federates with a trust domain
// that has no bundle. It wraps ErrFailedPrecondition. SPIRE reports it as
// code Internal, "failed to create entry: unable to find federated bundle
// \"spiffe://x\"" (Error() without the "datastore: " prefix is that text).
type MissingBundleError struct {
	TrustDomain string // trust domain ID, "spiffe://example.org"
}

func (e *MissingBundleError) Error() string {
	return fmt.Sprintf("datastore: unable to find federated bundle %q", e.TrustDomain)
}

// Unwrap returns ErrFailedPrecondition.
func (e *MissingBundleError) Unwrap() error { return ErrFailedPrecondition }

// BundleInUseError is returned by DeleteBundle in BundleDeleteRestrict mode
// while entries federate with the bundle. It wraps ErrFailedPrecondition.
// SPIRE's message is "datastore-sql: cannot delete bundle; federated with N
// registration entries".
type BundleInUseError struct {
	TrustDomain string
	Entries     int
}

func (e *BundleInUseError) Error() string {
	return fmt.Sprintf("datastore: cannot delete bundle; federated with %d registration entries", e.Entries)
}

// Unwrap returns ErrFailedPrecondition.
func (e *BundleInUseError) Unwrap() error { return ErrFailedPrecondition }

// internalError wraps a driver failure. Its text may hold SQL or driver
// detail and is for logs only.
func internalError(op string, err error) error {
	if isRefusal(err) {
		return err
	}
	return fmt.Errorf("datastore: %s: %w", op, err)
}

// isRefusal reports whether err is one of the store's refusals (a per-item
// outcome in a batch) rather than a failure of the database.
func isRefusal(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrAlreadyExists) ||
		errors.Is(err, ErrFailedPrecondition) || errors.Is(err, ErrInvalidArgument)
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
