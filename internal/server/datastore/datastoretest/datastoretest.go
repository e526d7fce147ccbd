// Package datastoretest holds the conformance suite of the datastore (Run),
// which every SQL dialect must pass, and helpers that open a real store on a
// fresh SQLite file (OpenSQLite) or a fresh PostgreSQL database
// (OpenPostgres) for tests of other packages. There is no fake datastore.
package datastoretest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for the admin connection

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// PostgresDSNEnv names the environment variable holding the DSN of a
// PostgreSQL server the tests may create databases on.
const PostgresDSNEnv = "HIVE_TEST_POSTGRES_DSN"

// DefaultPostgresDSN is used when PostgresDSNEnv is unset.
const DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// SQLiteConfig returns the configuration of a new SQLite database file in a
// temporary directory removed at cleanup.
func SQLiteConfig(tb testing.TB) datastore.Config {
	tb.Helper()
	return datastore.Config{
		DatabaseType:     datastore.DatabaseSQLite,
		ConnectionString: filepath.Join(tb.TempDir(), "datastore.sqlite3"),
	}
}

// PostgresConfig creates a uniquely named database on the server of
// PostgresDSNEnv (DefaultPostgresDSN when unset), returns its configuration
// and drops it at cleanup. The test fails, never skips, when the server is
// unreachable.
func PostgresConfig(tb testing.TB) datastore.Config {
	tb.Helper()
	admin := os.Getenv(PostgresDSNEnv)
	if admin == "" {
		admin = DefaultPostgresDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		tb.Fatalf("PostgreSQL DSN in %s is invalid: %v", PostgresDSNEnv, err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		tb.Fatalf("PostgreSQL is unreachable (DSN from %s, default %q): %v", PostgresDSNEnv, DefaultPostgresDSN, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "hive_test_" + hex.EncodeToString(b[:])
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create PostgreSQL test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("pgx", admin)
		if err != nil {
			tb.Errorf("drop PostgreSQL test database %s: %v", name, err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop PostgreSQL test database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(admin, name)
	if err != nil {
		tb.Fatalf("PostgreSQL DSN in %s: %v", PostgresDSNEnv, err)
	}
	return datastore.Config{DatabaseType: datastore.DatabasePostgres, ConnectionString: dsn}
}

// withDatabase returns dsn (URL or key=value form) naming database name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil
}

// Open opens a store with cfg and closes it at cleanup.
func Open(tb testing.TB, cfg datastore.Config) *datastore.Store {
	tb.Helper()
	s, err := datastore.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open datastore: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close datastore: %v", err)
		}
	})
	return s
}

// OpenSQLite opens a store on a new SQLite file, closed and removed at cleanup.
func OpenSQLite(tb testing.TB) *datastore.Store {
	tb.Helper()
	return Open(tb, SQLiteConfig(tb))
}

// OpenPostgres opens a store on a new PostgreSQL database (see
// PostgresConfig), closed and dropped at cleanup.
func OpenPostgres(tb testing.TB) *datastore.Store {
	tb.Helper()
	return Open(tb, PostgresConfig(tb))
}

// Run is the conformance suite: every dialect passes it. open returns a
// fresh, empty store; it is called once per group of tests.
func Run(t *testing.T, open func(tb testing.TB) *datastore.Store) {
	t.Run("Entries", func(t *testing.T) { testEntries(t, open) })
	t.Run("EntryFilters", func(t *testing.T) { testEntryFilters(t, open) })
	t.Run("EntryPagination", func(t *testing.T) { testEntryPagination(t, open) })
	t.Run("CreateEntries", func(t *testing.T) { testCreateEntries(t, open) })
	t.Run("Bundles", func(t *testing.T) { testBundles(t, open) })
	t.Run("BundleDelete", func(t *testing.T) { testBundleDelete(t, open) })
	t.Run("BundleSequence", func(t *testing.T) { testBundleSequence(t, open) })
	t.Run("Nodes", func(t *testing.T) { testNodes(t, open) })
	t.Run("NodeFilters", func(t *testing.T) { testNodeFilters(t, open) })
	t.Run("JoinTokens", func(t *testing.T) { testJoinTokens(t, open) })
	t.Run("ConsumeJoinTokenConcurrently", func(t *testing.T) { testConsumeJoinTokenConcurrently(t, open) })
	t.Run("Federation", func(t *testing.T) { testFederation(t, open) })
	t.Run("CAJournal", func(t *testing.T) { testCAJournal(t, open) })
	t.Run("Changes", func(t *testing.T) { testChanges(t, open) })
	t.Run("ChangesUnderConcurrency", func(t *testing.T) { testChangesUnderConcurrency(t, open) })
}
