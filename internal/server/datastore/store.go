package datastore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Database types accepted in Config.DatabaseType, as SPIRE's "sql" DataStore
// plugin spells them.
const (
	DatabaseSQLite   = "sqlite3"
	DatabasePostgres = "postgres"
)

// Config configures Open.
type Config struct {
	// DatabaseType is "sqlite3" (the default when empty) or "postgres".
	DatabaseType string
	// ConnectionString is a file path for SQLite (query parameters of
	// modernc.org/sqlite are kept; the store adds WAL, busy_timeout, foreign
	// keys and synchronous=FULL unless set) or a pgx DSN/URL for PostgreSQL.
	ConnectionString string
	// Logger receives migration messages; nil discards them.
	Logger *slog.Logger
	// Clock, when set, replaces time.Now for CreatedAt and change times.
	Clock func() time.Time
}

// Store is the SQL datastore. It is safe for concurrent use; Close releases
// its connections.
type Store struct {
	d   dialect
	wdb *sql.DB // writing transactions
	rdb *sql.DB // reads; the same pool as wdb on PostgreSQL
	log *slog.Logger
	now func() time.Time

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the database, applies pending migrations and returns the
// store. It fails with an error wrapping ErrNewerSchema when the database was
// migrated by a newer binary. The caller owns the store and must Close it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.ConnectionString == "" {
		return nil, newError(ErrInvalidArgument, "connection string is empty")
	}
	s := &Store{log: cfg.Logger, now: cfg.Clock}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	switch cfg.DatabaseType {
	case "", DatabaseSQLite, "sqlite":
		err = s.openSQLite(ctx, cfg.ConnectionString)
	case DatabasePostgres:
		err = s.openPostgres(ctx, cfg.ConnectionString)
	default:
		return nil, newError(ErrInvalidArgument, "unsupported database type %q", cfg.DatabaseType)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the connection pools. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.rdb != nil && s.rdb != s.wdb {
			errs = append(errs, s.rdb.Close())
		}
		if s.wdb != nil {
			errs = append(errs, s.wdb.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.wdb.PingContext(ctx); err != nil {
		return internalError("ping", err)
	}
	if s.rdb != s.wdb {
		if err := s.rdb.PingContext(ctx); err != nil {
			return internalError("ping", err)
		}
	}
	return nil
}

// DatabaseType returns "sqlite3" or "postgres".
func (s *Store) DatabaseType() string { return s.d.name() }

// dialect is what differs between SQLite and PostgreSQL.
type dialect interface {
	name() string
	// rebind turns "?" placeholders into the dialect's.
	rebind(q string) string
	// ddl substitutes the dialect's types for the {{serial}} (auto-increment
	// primary key) and {{blob}} placeholders of the migrations.
	ddl(q string) string
	// prepares reports whether statements are worth preparing per
	// transaction (the driver does not cache them itself).
	prepares() bool
	isUniqueViolation(err error) bool
	// lockWriters serializes writing transactions (no-op where the pool
	// already does).
	lockWriters(ctx context.Context, tx *sql.Tx) error
	// notify announces the last change sequence of a committing transaction.
	notify(ctx context.Context, tx *sql.Tx, seq int64) error
	readTxOptions() *sql.TxOptions
	// detachStatements reports whether statements of a writing transaction
	// run without the caller's cancellation (the driver would start a
	// watcher goroutine per statement); the transaction still ends with the
	// context.
	detachStatements() bool
	// insertID runs an INSERT (q, without RETURNING) and returns the value
	// of the auto-increment column idCol of the new row.
	insertID(ctx context.Context, t *txn, q, idCol string, args ...any) (int64, error)
}

// txn is one transaction. Queries are written with "?" placeholders and
// rebound for the dialect.
type txn struct {
	tx      *sql.Tx
	d       dialect
	now     int64
	lastSeq int64 // last change-log sequence appended
	stmts   map[string]*sql.Stmt
	detach  bool // run statements without cancellation (see dialect.detachStatements)
}

func (t *txn) stmtCtx(ctx context.Context) context.Context {
	if t.detach {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (t *txn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = t.stmtCtx(ctx)
	if !t.d.prepares() {
		return t.tx.ExecContext(ctx, t.d.rebind(q), args...)
	}
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *txn) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx = t.stmtCtx(ctx)
	if !t.d.prepares() {
		return t.tx.QueryContext(ctx, t.d.rebind(q), args...)
	}
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *txn) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	ctx = t.stmtCtx(ctx)
	if !t.d.prepares() {
		return t.tx.QueryRowContext(ctx, t.d.rebind(q), args...)
	}
	st, err := t.stmt(ctx, q)
	if err != nil {
		// Let Row.Scan report the failure.
		return t.tx.QueryRowContext(ctx, t.d.rebind(q), args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// stmt prepares q once per transaction; statements close with the transaction.
func (t *txn) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := t.stmts[q]; ok {
		return st, nil
	}
	st, err := t.tx.PrepareContext(ctx, t.d.rebind(q))
	if err != nil {
		return nil, err
	}
	if t.stmts == nil {
		t.stmts = make(map[string]*sql.Stmt)
	}
	t.stmts[q] = st
	return st, nil
}

// savepoint runs fn inside a savepoint: a refusal rolls back only fn's work
// and is returned; any other error is returned as is and poisons the
// transaction.
func (t *txn) savepoint(ctx context.Context, fn func() error) error {
	if _, err := t.exec(ctx, "SAVEPOINT item"); err != nil {
		return internalError("savepoint", err)
	}
	seq := t.lastSeq
	if err := fn(); err != nil {
		if _, rerr := t.exec(ctx, "ROLLBACK TO SAVEPOINT item"); rerr != nil {
			return internalError("rollback to savepoint", rerr)
		}
		if _, rerr := t.exec(ctx, "RELEASE SAVEPOINT item"); rerr != nil {
			return internalError("release savepoint", rerr)
		}
		t.lastSeq = seq
		return err
	}
	if _, err := t.exec(ctx, "RELEASE SAVEPOINT item"); err != nil {
		return internalError("release savepoint", err)
	}
	return nil
}

// write runs fn in a writing transaction and commits when fn returns nil.
// Writers are serialized (see the package comment). fn's error is returned
// unchanged.
func (s *Store) write(ctx context.Context, fn func(*txn) error) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return internalError("begin transaction", err)
	}
	t := &txn{tx: tx, d: s.d, now: s.now().Unix(), detach: s.d.detachStatements()}
	if err := s.d.lockWriters(ctx, tx); err != nil {
		_ = tx.Rollback()
		return internalError("lock writers", err)
	}
	if err := fn(t); err != nil {
		_ = tx.Rollback()
		return err
	}
	if t.lastSeq > 0 {
		if err := s.d.notify(ctx, tx, t.lastSeq); err != nil {
			_ = tx.Rollback()
			return internalError("notify", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return internalError("commit", err)
	}
	return nil
}

// read runs fn in a read-only transaction (one consistent snapshot).
func (s *Store) read(ctx context.Context, fn func(*txn) error) error {
	tx, err := s.rdb.BeginTx(ctx, s.d.readTxOptions())
	if err != nil {
		return internalError("begin transaction", err)
	}
	defer func() { _ = tx.Rollback() }()
	t := &txn{tx: tx, d: s.d, now: s.now().Unix()}
	return fn(t)
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// parseToken parses a page token (the last row id of the previous page).
func parseToken(token string) (int64, error) {
	if token == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(token, 10, 64)
	if err != nil || v < 0 {
		return 0, newError(ErrInvalidArgument, "could not parse token %q", token)
	}
	return v, nil
}

// pageQuery completes a list query over table alias (whose row id column is
// alias.id): the filter conditions, the rows after the page token, row-id
// order and the page's LIMIT. It fails on a malformed token.
func pageQuery(selectFrom, alias string, conds []string, args []any, p *Pagination) (string, []any, error) {
	if p != nil {
		after, err := parseToken(p.Token)
		if err != nil {
			return "", nil, err
		}
		if after > 0 {
			conds = append(conds, alias+".id > ?")
			args = append(args, after)
		}
	}
	q := selectFrom + where(conds) + " ORDER BY " + alias + ".id"
	if limit := pageLimit(p); limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	return q, args, nil
}

// pageLimit returns the LIMIT for a page query (one more than the page size,
// to know whether another page follows), or 0 for no limit.
func pageLimit(p *Pagination) int {
	if p == nil || p.PageSize <= 0 {
		return 0
	}
	return int(p.PageSize) + 1
}

// pageCut returns how many of the over-fetched rows (row ids in order) make
// the page and the token of the next page ("" when there is none); the token
// is stored in p as well.
func pageCut(p *Pagination, rowIDs []int64) (int, string) {
	if p == nil {
		return len(rowIDs), ""
	}
	keep, token := len(rowIDs), ""
	if p.PageSize > 0 && len(rowIDs) > int(p.PageSize) {
		keep = int(p.PageSize)
		token = strconv.FormatInt(rowIDs[keep-1], 10)
	}
	p.Token = token
	return keep, token
}
