package datastore

import (
	"context"
)

// Change operations.
const (
	OpCreate = "create"
	OpUpdate = "update"
	OpDelete = "delete"
)

// appendChange records a change in t's transaction.
func (t *txn) appendChange(ctx context.Context, kind ChangeKind, id, op string) error {
	seq, err := t.d.insertID(ctx, t, "INSERT INTO changes (kind, object_id, op, at) VALUES (?, ?, ?, ?)", "seq",
		string(kind), id, op, t.now)
	if err != nil {
		return internalError("append change", err)
	}
	t.lastSeq = seq
	return nil
}

// ListChanges returns up to limit changes with a sequence number greater
// than afterSeq, oldest first; limit <= 0 means no limit. Sequence numbers
// are strictly increasing in commit order, so a reader that resumes after
// the last Seq it saw misses nothing.
func (s *Store) ListChanges(ctx context.Context, afterSeq int64, limit int) ([]Change, error) {
	q := "SELECT seq, kind, object_id, op, at FROM changes WHERE seq > ? ORDER BY seq"
	args := []any{afterSeq}
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	var out []Change
	err := s.read(ctx, func(t *txn) error {
		rows, err := t.query(ctx, q, args...)
		if err != nil {
			return internalError("list changes", err)
		}
		defer rows.Close()
		for rows.Next() {
			var c Change
			var kind string
			if err := rows.Scan(&c.Seq, &kind, &c.ID, &c.Op, &c.At); err != nil {
				return internalError("list changes", err)
			}
			c.Kind = ChangeKind(kind)
			out = append(out, c)
		}
		if err := rows.Err(); err != nil {
			return internalError("list changes", err)
		}
		return nil
	})
	return out, err
}

// LatestChangeSeq returns the sequence number of the last change, 0 when the
// log is empty.
func (s *Store) LatestChangeSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.read(ctx, func(t *txn) error {
		if err := t.queryRow(ctx, "SELECT COALESCE(MAX(seq), 0) FROM changes").Scan(&seq); err != nil {
			return internalError("latest change", err)
		}
		return nil
	})
	return seq, err
}

// PruneChanges deletes changes recorded before the unix time olderThan,
// always keeping the latest one so LatestChangeSeq never goes back.
//
// Extension: the change log is ours, SPIRE has per-kind event tables.
func (s *Store) PruneChanges(ctx context.Context, olderThan int64) error {
	return s.write(ctx, func(t *txn) error {
		if _, err := t.exec(ctx, "DELETE FROM changes WHERE at < ? AND seq < (SELECT MAX(seq) FROM changes)", olderThan); err != nil {
			return internalError("prune changes", err)
		}
		return nil
	})
}
