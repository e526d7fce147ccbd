package datastore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// Listen calls onChange whenever another writer commits a change, until ctx
// ends (then it returns nil). On PostgreSQL it LISTENs on NotifyChannel, so
// servers sharing the database learn of each other's writes at once instead
// of at their next poll; a lost connection is retried after a second. On
// SQLite (one server per file) it only waits for ctx.
func (s *Store) Listen(ctx context.Context, onChange func()) error {
	if _, ok := s.d.(postgresDialect); !ok {
		<-ctx.Done()
		return nil
	}
	for {
		err := s.listenOnce(ctx, onChange)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("Lost the PostgreSQL change notifications; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		onChange() // changes may have been missed while disconnected
	}
}

func (s *Store) listenOnce(ctx context.Context, onChange func()) error {
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("datastore: listen: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error {
		c, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return errors.New("datastore: listen: not a pgx connection")
		}
		pc := c.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
			return fmt.Errorf("datastore: listen: %w", err)
		}
		defer func() {
			// The connection returns to the pool: stop listening on it.
			uctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, _ = pc.Exec(uctx, "UNLISTEN *")
		}()
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return fmt.Errorf("datastore: listen: %w", err)
			}
			onChange()
		}
	})
}
