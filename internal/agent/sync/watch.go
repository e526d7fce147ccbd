package sync

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/push"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// watch triggers a sync on every revision the server pushes (Extension:
// hive.push.v1 Watch). The server sends its current revision when the
// stream opens, so a reconnection also syncs. A server without the
// extension answers Unimplemented; the agent then polls every PollInterval,
// as SPIRE's agent does. watch returns nil when ctx ends.
func (s *Syncer) watch(ctx context.Context) error {
	bo := newRetryBackoff(250*time.Millisecond, 10*time.Second, s.jitter)
	for {
		cc, gen := s.client.conn()
		if cc == nil {
			return nil
		}
		err := push.Watch(ctx, cc, func(rev int64) {
			bo.reset()
			s.log.Debug("Revision pushed", telemetry.Revision, rev)
			s.announce(rev)
			s.Trigger()
		})
		if ctx.Err() != nil {
			return nil
		}
		switch status.Code(err) {
		case codes.Unimplemented:
			s.log.Info("Server does not push changes; polling", "interval", s.poll)
			return s.pollLoop(ctx)
		case codes.PermissionDenied:
			// Let the sync loop meet the refusal and act on it.
			s.Trigger()
		}
		if s.client.generation() != gen {
			continue // the connection was replaced after a renewal
		}
		d := bo.next()
		s.log.Debug("Push stream ended; reconnecting", telemetry.Error, err, telemetry.RetryInterval, d)
		if !sleep(ctx, d) {
			return nil
		}
	}
}

// pollLoop triggers a sync every PollInterval until ctx ends.
func (s *Syncer) pollLoop(ctx context.Context) error {
	ticker := time.NewTicker(s.poll)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			s.Trigger()
		}
	}
}

// announce records a pushed revision for the sync metrics.
func (s *Syncer) announce(rev int64) {
	for {
		cur := s.announced.Load()
		if rev <= cur || s.announced.CompareAndSwap(cur, rev) {
			break
		}
	}
	s.pendingSince.CompareAndSwap(0, time.Now().UnixNano())
	s.metrics.RevisionAnnounced(rev)
}
