package datastore_test

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

// backends are the dialects every store test runs on. PostgreSQL must be
// reachable (datastoretest.PostgresDSNEnv): the tests fail, never skip.
var backends = []struct {
	name   string
	config func(testing.TB) datastore.Config
	driver string
}{
	{"SQLite", datastoretest.SQLiteConfig, "sqlite"},
	{"Postgres", datastoretest.PostgresConfig, "pgx"},
}

func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			datastoretest.Run(t, func(tb testing.TB) *datastore.Store {
				return datastoretest.Open(tb, b.config(tb))
			})
		})
	}
}

func TestMigrations(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.config(t)
			ctx := t.Context()

			t.Run("ok/reopen is idempotent", func(t *testing.T) {
				s, err := datastore.Open(ctx, cfg)
				requireNoError(t, err)
				e, err := s.CreateEntry(ctx, &datastore.Entry{SPIFFEID: "spiffe://td/w", ParentID: "spiffe://td/n",
					Selectors: []datastore.Selector{{Type: "a", Value: "1"}}})
				requireNoError(t, err)
				requireNoError(t, s.Close())
				requireNoError(t, s.Close()) // Close is idempotent
				for range 2 {
					s, err = datastore.Open(ctx, cfg)
					requireNoError(t, err)
					got, err := s.FetchEntry(ctx, e.ID)
					requireNoError(t, err)
					if got.ID != e.ID {
						t.Fatalf("entry lost across reopen")
					}
					requireNoError(t, s.Close())
				}
				db := rawDB(t, b.driver, cfg)
				var n, v int64
				requireNoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*), MAX(version) FROM schema_version").Scan(&n, &v))
				if n != datastore.LatestSchemaVersion() || v != datastore.LatestSchemaVersion() {
					t.Fatalf("schema_version has %d rows up to %d, want %d", n, v, datastore.LatestSchemaVersion())
				}
			})

			t.Run("fail/newer schema", func(t *testing.T) {
				db := rawDB(t, b.driver, cfg)
				newer := datastore.LatestSchemaVersion() + 41
				_, err := db.ExecContext(ctx, fmt.Sprintf("INSERT INTO schema_version (version, applied_at) VALUES (%d, 0)", newer))
				requireNoError(t, err)
				s, err := datastore.Open(ctx, cfg)
				if err == nil {
					_ = s.Close()
					t.Fatal("Open accepted a newer schema")
				}
				if !errors.Is(err, datastore.ErrNewerSchema) {
					t.Fatalf("expected ErrNewerSchema, got %v", err)
				}
				for _, v := range []int64{newer, datastore.LatestSchemaVersion()} {
					if !strings.Contains(err.Error(), fmt.Sprint(v)) {
						t.Fatalf("error %q does not name version %d", err, v)
					}
				}
			})
		})
	}
}

func TestOpen(t *testing.T) {
	for _, tt := range []struct {
		name   string
		cfg    datastore.Config
		target error
		msg    string
	}{
		{"fail/unknown database type", datastore.Config{DatabaseType: "mysql", ConnectionString: "x"},
			datastore.ErrInvalidArgument, `unsupported database type "mysql"`},
		{"fail/empty connection string", datastore.Config{DatabaseType: "sqlite3"},
			datastore.ErrInvalidArgument, "connection string is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := datastore.Open(t.Context(), tt.cfg)
			if !errors.Is(err, tt.target) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("expected %v containing %q, got %v", tt.target, tt.msg, err)
			}
		})
	}
	t.Run("ok/ping", func(t *testing.T) {
		for _, b := range backends {
			cfg := b.config(t)
			s := datastoretest.Open(t, cfg)
			requireNoError(t, s.Ping(t.Context()))
			if s.DatabaseType() != cfg.DatabaseType {
				t.Fatalf("database type %q", s.DatabaseType())
			}
		}
	})
}

// rawDB opens the database of cfg directly, closed at cleanup.
func rawDB(t testing.TB, driver string, cfg datastore.Config) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, cfg.ConnectionString)
	requireNoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func requireNoError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}
