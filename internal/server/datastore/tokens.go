package datastore

import (
	"context"
	"database/sql"
	"errors"
)

// CreateJoinToken stores a join token. It fails with ErrAlreadyExists when
// the token exists.
func (s *Store) CreateJoinToken(ctx context.Context, jt *JoinToken) error {
	if jt == nil || jt.Token == "" {
		return newError(ErrInvalidArgument, "join token is empty")
	}
	return s.write(ctx, func(t *txn) error {
		if _, err := t.exec(ctx, "INSERT INTO join_tokens (token, expires_at) VALUES (?, ?)", jt.Token, jt.ExpiresAt); err != nil {
			if t.d.isUniqueViolation(err) {
				return newError(ErrAlreadyExists, "join token already exists")
			}
			return internalError("create join token", err)
		}
		return nil
	})
}

// FetchJoinToken returns a join token, or ErrNotFound. Expiry is not
// checked.
func (s *Store) FetchJoinToken(ctx context.Context, token string) (*JoinToken, error) {
	var out *JoinToken
	err := s.read(ctx, func(t *txn) error {
		jt := &JoinToken{Token: token}
		err := t.queryRow(ctx, "SELECT expires_at FROM join_tokens WHERE token = ?", token).Scan(&jt.ExpiresAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return newError(ErrNotFound, "join token not found")
		case err != nil:
			return internalError("fetch join token", err)
		}
		out = jt
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ConsumeJoinToken deletes a join token and returns it, atomically: of
// concurrent callers for one token exactly one gets it, the others
// ErrNotFound. Expiry is not checked; the caller compares ExpiresAt.
//
// Extension: SPIRE fetches then deletes in two calls.
func (s *Store) ConsumeJoinToken(ctx context.Context, token string) (*JoinToken, error) {
	var out *JoinToken
	err := s.write(ctx, func(t *txn) error {
		jt := &JoinToken{Token: token}
		err := t.queryRow(ctx, "DELETE FROM join_tokens WHERE token = ? RETURNING expires_at", token).Scan(&jt.ExpiresAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return newError(ErrNotFound, "join token not found")
		case err != nil:
			return internalError("consume join token", err)
		}
		out = jt
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteJoinToken deletes a join token, or fails with ErrNotFound.
func (s *Store) DeleteJoinToken(ctx context.Context, token string) error {
	return s.write(ctx, func(t *txn) error {
		res, err := t.exec(ctx, "DELETE FROM join_tokens WHERE token = ?", token)
		if err != nil {
			return internalError("delete join token", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internalError("delete join token", err)
		} else if n == 0 {
			return newError(ErrNotFound, "join token not found")
		}
		return nil
	})
}

// PruneJoinTokens deletes the join tokens that expire before the unix time
// expiresBefore.
func (s *Store) PruneJoinTokens(ctx context.Context, expiresBefore int64) error {
	return s.write(ctx, func(t *txn) error {
		if _, err := t.exec(ctx, "DELETE FROM join_tokens WHERE expires_at < ?", expiresBefore); err != nil {
			return internalError("prune join tokens", err)
		}
		return nil
	})
}
