package datastore

import (
	"database/sql"
	"path/filepath"
	"testing"
)

func TestSQLitePragmas(t *testing.T) {
	s, err := Open(t.Context(), Config{ConnectionString: filepath.Join(t.TempDir(), "ds.sqlite3")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tt := range []struct {
		name   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"ok/write WAL", s.wdb, "journal_mode", "wal"},
		{"ok/write synchronous FULL", s.wdb, "synchronous", "2"},
		{"ok/write foreign keys", s.wdb, "foreign_keys", "1"},
		{"ok/write busy timeout", s.wdb, "busy_timeout", "10000"},
		{"ok/write temp store in memory", s.wdb, "temp_store", "2"},
		{"ok/read WAL", s.rdb, "journal_mode", "wal"},
		{"ok/read busy timeout", s.rdb, "busy_timeout", "10000"},
		{"ok/read query only", s.rdb, "query_only", "1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if err := tt.db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("PRAGMA %s = %s, want %s", tt.pragma, got, tt.want)
			}
		})
	}
}
