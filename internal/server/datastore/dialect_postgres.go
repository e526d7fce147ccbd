package datastore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// postgresWriterLock is the key of the transaction-scoped advisory lock that
// serializes writers (and migrations) across every server sharing the
// database, so change sequences are assigned in commit order.
const postgresWriterLock = 0x68697665 // "hive"

// NotifyChannel is the PostgreSQL channel every writing transaction notifies
// with its last change sequence number (decimal) as payload.
const NotifyChannel = "hive_changes"

type postgresDialect struct{}

func (postgresDialect) name() string   { return DatabasePostgres }
func (postgresDialect) prepares() bool { return false } // pgx caches statements itself

func (postgresDialect) rebind(q string) string {
	n := strings.Count(q, "?")
	if n == 0 {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + n*3)
	i := 0
	for _, r := range q {
		if r == '?' {
			i++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (postgresDialect) ddl(q string) string {
	return strings.NewReplacer("{{serial}}", "BIGSERIAL PRIMARY KEY", "{{blob}}", "BYTEA").Replace(q)
}

func (postgresDialect) isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func (postgresDialect) lockWriters(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(postgresWriterLock))
	return err
}

func (postgresDialect) notify(ctx context.Context, tx *sql.Tx, seq int64) error {
	_, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, strconv.FormatInt(seq, 10))
	return err
}

func (postgresDialect) readTxOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

func (postgresDialect) detachStatements() bool { return false }

func (postgresDialect) insertID(ctx context.Context, t *txn, q, idCol string, args ...any) (int64, error) {
	var id int64
	err := t.queryRow(ctx, q+" RETURNING "+idCol, args...).Scan(&id)
	return id, err
}

// openPostgres opens one pool for reads and writes.
func (s *Store) openPostgres(ctx context.Context, dsn string) error {
	s.d = postgresDialect{}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return internalError("open postgres", err)
	}
	db.SetMaxIdleConns(8)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return internalError("connect to postgres", err)
	}
	s.wdb, s.rdb = db, db
	return nil
}
