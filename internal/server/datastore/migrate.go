package datastore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered schema step, migrations/NNN_name.sql.
type migration struct {
	version int64
	name    string
	sql     string
}

// loadMigrations reads the embedded migrations in version order. Versions
// start at 1 and have no gaps.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("datastore: migration %q: name is not NNN_name.sql", base)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return int(a.version - b.version) })
	for i, m := range ms {
		if m.version != int64(i+1) {
			return nil, fmt.Errorf("datastore: migration %q out of sequence (want version %d)", m.name, i+1)
		}
	}
	return ms, nil
}

// LatestSchemaVersion is the schema version this binary migrates to.
func LatestSchemaVersion() int64 {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate brings the schema to the latest version in one writing transaction
// (PostgreSQL servers starting together wait for each other on the writer
// lock). A database at a newer version is refused with ErrNewerSchema.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].version
	var applied []int64
	err = s.write(ctx, func(t *txn) error {
		if _, err := t.tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
	version BIGINT NOT NULL PRIMARY KEY,
	applied_at BIGINT NOT NULL
)`); err != nil {
			return internalError("create schema_version", err)
		}
		var cur int64
		if err := t.tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_version").Scan(&cur); err != nil {
			return internalError("read schema version", err)
		}
		if cur > latest {
			return fmt.Errorf("%w: the database is at schema version %d, this binary supports up to version %d",
				ErrNewerSchema, cur, latest)
		}
		for _, m := range ms {
			if m.version <= cur {
				continue
			}
			for _, stmt := range splitStatements(s.d.ddl(m.sql)) {
				if _, err := t.tx.ExecContext(ctx, stmt); err != nil {
					return internalError("migration "+m.name, err)
				}
			}
			if _, err := t.tx.ExecContext(ctx, s.d.rebind("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"),
				m.version, t.now); err != nil {
				return internalError("record schema version", err)
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, v := range applied {
		s.log.Info("Applied datastore migration", "version", v, "database_type", s.d.name())
	}
	return nil
}

// splitStatements splits a migration at semicolons that end a line and drops
// "--" comment lines. Migrations must not put ";" at the end of a line
// inside a string.
func splitStatements(script string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(script) {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(trimmed, ";") {
			if stmt := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")); stmt != "" {
				out = append(out, stmt)
			}
			cur.Reset()
		}
	}
	if stmt := strings.TrimSpace(cur.String()); stmt != "" {
		out = append(out, stmt)
	}
	return out
}
