package datastore

import (
	"context"
	"database/sql"
	"errors"
)

// FetchCAJournal returns the CA journal stored under key, or ErrNotFound.
// The content is opaque to the store.
func (s *Store) FetchCAJournal(ctx context.Context, key string) ([]byte, error) {
	var data []byte
	err := s.read(ctx, func(t *txn) error {
		err := t.queryRow(ctx, "SELECT data FROM ca_journal WHERE journal_key = ?", key).Scan(&data)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return newError(ErrNotFound, "CA journal %q not found", key)
		case err != nil:
			return internalError("fetch CA journal", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// SetCAJournal stores data under key, replacing what was there.
func (s *Store) SetCAJournal(ctx context.Context, key string, data []byte) error {
	if key == "" {
		return newError(ErrInvalidArgument, "CA journal key is empty")
	}
	if data == nil {
		data = []byte{}
	}
	return s.write(ctx, func(t *txn) error {
		if _, err := t.exec(ctx, `INSERT INTO ca_journal (journal_key, data, updated_at) VALUES (?, ?, ?)
	ON CONFLICT (journal_key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
			key, data, t.now); err != nil {
			return internalError("set CA journal", err)
		}
		return nil
	})
}
