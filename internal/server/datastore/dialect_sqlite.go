package datastore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteBusyTimeoutMS is how long a connection waits for a lock held by
// another process before SQLITE_BUSY.
const sqliteBusyTimeoutMS = 10000

// sqliteReaders is the size of the read pool (WAL readers never block the
// writer).
const sqliteReaders = 4

type sqliteDialect struct{}

func (sqliteDialect) name() string           { return DatabaseSQLite }
func (sqliteDialect) rebind(q string) string { return q }
func (sqliteDialect) prepares() bool         { return true }

func (sqliteDialect) ddl(q string) string {
	return strings.NewReplacer("{{serial}}", "INTEGER PRIMARY KEY AUTOINCREMENT", "{{blob}}", "BLOB").Replace(q)
}

func (sqliteDialect) isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// lockWriters is a no-op: the write pool has one connection and begins
// transactions with BEGIN IMMEDIATE.
func (sqliteDialect) lockWriters(context.Context, *sql.Tx) error { return nil }

func (sqliteDialect) notify(context.Context, *sql.Tx, int64) error { return nil }

func (sqliteDialect) readTxOptions() *sql.TxOptions { return &sql.TxOptions{ReadOnly: true} }

// detachStatements: writing statements are short; loops over many items
// check the context themselves.
func (sqliteDialect) detachStatements() bool { return true }

func (sqliteDialect) insertID(ctx context.Context, t *txn, q, _ string, args ...any) (int64, error) {
	res, err := t.exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// openSQLite opens a one-connection write pool and a read pool on the same
// file. WAL mode lets readers run beside the writer; synchronous=FULL makes
// every acknowledged commit survive a crash.
func (s *Store) openSQLite(ctx context.Context, conn string) error {
	s.d = sqliteDialect{}
	path, query, _ := strings.Cut(conn, "?")
	user, err := url.ParseQuery(query)
	if err != nil {
		return newError(ErrInvalidArgument, "malformed SQLite connection string query: %v", err)
	}
	memory := strings.Contains(path, ":memory:") || user.Get("mode") == "memory"
	if !memory {
		file := strings.TrimPrefix(path, "file:")
		if dir := filepath.Dir(file); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("datastore: create database directory: %w", err)
			}
		}
	}

	writeDSN := sqliteDSN(path, user, []string{
		fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS),
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"foreign_keys(1)",
		// Savepoint sub-journals in memory: a batch pays one fsync at
		// commit, not a temp-file write per item.
		"temp_store(MEMORY)",
	}, "immediate")
	wdb, err := sql.Open("sqlite", writeDSN)
	if err != nil {
		return internalError("open sqlite", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	s.wdb, s.rdb = wdb, wdb
	if err := wdb.PingContext(ctx); err != nil {
		_ = wdb.Close()
		return internalError("open sqlite", err)
	}
	if memory {
		return nil
	}

	readDSN := sqliteDSN(path, user, []string{
		fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS),
		"foreign_keys(1)",
		"query_only(1)",
	}, "")
	rdb, err := sql.Open("sqlite", readDSN)
	if err != nil {
		_ = wdb.Close()
		return internalError("open sqlite", err)
	}
	rdb.SetMaxOpenConns(sqliteReaders)
	rdb.SetMaxIdleConns(sqliteReaders)
	rdb.SetConnMaxLifetime(0)
	rdb.SetConnMaxIdleTime(0)
	s.rdb = rdb
	return nil
}

// sqliteDSN adds pragmas the user did not set and the transaction lock mode
// to the user's parameters.
func sqliteDSN(path string, user url.Values, pragmas []string, txlock string) string {
	q := url.Values{}
	for k, v := range user {
		q[k] = append([]string(nil), v...)
	}
	set := map[string]bool{}
	for _, p := range q["_pragma"] {
		set[pragmaName(p)] = true
	}
	for _, p := range pragmas {
		if !set[pragmaName(p)] {
			q.Add("_pragma", p)
		}
	}
	if txlock != "" && q.Get("_txlock") == "" {
		q.Set("_txlock", txlock)
	}
	return path + "?" + q.Encode()
}

func pragmaName(p string) string {
	p = strings.ToLower(strings.TrimSpace(p))
	if i := strings.IndexAny(p, "(= "); i >= 0 {
		p = p[:i]
	}
	return p
}
