// Package datastore is the server's SQL store: registration entries, attested
// nodes and their selectors, join tokens, bundles, the CA journal, federation
// relationships and the change log that feeds the authorized-entry index.
//
// A *Store talks to SQLite (modernc.org/sqlite, pure Go, the default) or to
// PostgreSQL (pgx) through database/sql. The schema is created and upgraded by
// the versioned migrations embedded from migrations/*.sql; Open refuses a
// database migrated by a newer binary (ErrNewerSchema).
//
// Every mutation of entries, attested nodes, node selectors and bundles
// appends a Change row in the same transaction. Writers are serialized (one
// write connection on SQLite, a transaction-scoped advisory lock on
// PostgreSQL), so change sequence numbers are strictly increasing in commit
// order: a reader that has seen sequence N has seen every change up to N.
// On PostgreSQL each writing transaction also sends NOTIFY hive_changes with
// its last sequence number as payload.
//
// The package knows nothing about gRPC: callers branch on the sentinel errors
// (ErrNotFound, ErrAlreadyExists, ErrFailedPrecondition, ErrInvalidArgument)
// and the typed errors SimilarEntryError, MissingBundleError and
// BundleInUseError, and map them to status codes themselves. Errors that wrap
// none of them are internal failures whose text must not reach clients.
package datastore
