package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// entryMask is what the agent asks of each entry: SPIRE's agent mask plus
// the parent ID and DNS names the cache keeps.
var entryMask = &types.EntryMask{
	SpiffeId:       true,
	ParentId:       true,
	Selectors:      true,
	FederatesWith:  true,
	Admin:          true,
	Downstream:     true,
	RevisionNumber: true,
	StoreSvid:      true,
	Hint:           true,
	CreatedAt:      true,
	DnsNames:       true,
}

// fetchEntries brings s.entries up to date with the entries authorized to
// the agent: entry.v1 SyncAuthorizedEntries, which sends only the entries
// that changed when the set is large, or GetAuthorizedEntries when the
// server does not implement it.
func (s *Syncer) fetchEntries(ctx context.Context) error {
	if !s.useGetAuthorized {
		err := s.client.call(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
			return s.syncEntries(ctx, entryv1.NewEntryClient(cc))
		})
		if status.Code(err) != codes.Unimplemented {
			return err
		}
		s.log.Info("Server does not implement SyncAuthorizedEntries; using GetAuthorizedEntries")
		s.useGetAuthorized = true
	}
	return s.client.call(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		resp, err := entryv1.NewEntryClient(cc).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{OutputMask: entryMask})
		if err != nil {
			return fmt.Errorf("get authorized entries: %w", err)
		}
		entries := make(map[string]*types.Entry, len(resp.GetEntries()))
		for _, e := range resp.GetEntries() {
			if e.GetId() == "" {
				s.log.Warn("Received malformed entry from the server", telemetry.Error, "empty entry ID")
				continue
			}
			entries[e.GetId()] = e
		}
		s.entries = entries
		return nil
	})
}

// syncEntries runs one SyncAuthorizedEntries stream. Updated entries are
// kept as they arrive; entries no longer authorized are dropped only when
// the whole stream succeeded.
func (s *Syncer) syncEntries(ctx context.Context, client entryv1.EntryClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.SyncAuthorizedEntries(ctx)
	if err != nil {
		return fmt.Errorf("sync authorized entries: %w", err)
	}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{OutputMask: entryMask}); err != nil {
		return fmt.Errorf("sync authorized entries: %w", recvErr(stream, err))
	}
	resp, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("sync authorized entries: %w", err)
	}

	seen := make(map[string]struct{}, len(s.entries))
	keep := func(entries []*types.Entry) {
		for _, e := range entries {
			if e.GetId() == "" {
				s.log.Warn("Received malformed entry from the server", telemetry.Error, "empty entry ID")
				continue
			}
			seen[e.GetId()] = struct{}{}
			s.entries[e.GetId()] = e
		}
	}
	finish := func() error {
		for id := range s.entries {
			if _, ok := seen[id]; !ok {
				delete(s.entries, id)
			}
		}
		_ = stream.CloseSend()
		return nil
	}

	// Small sets come whole, possibly over several pages.
	if len(resp.GetEntryRevisions()) == 0 {
		keep(resp.GetEntries())
		for resp.GetMore() {
			if resp, err = stream.Recv(); err != nil {
				return fmt.Errorf("sync authorized entries: %w", err)
			}
			keep(resp.GetEntries())
		}
		return finish()
	}

	// Large sets come as revisions first; then the agent asks for the
	// entries it lacks or holds an older revision of.
	pageSize := len(resp.GetEntryRevisions())
	var need []string
	for {
		if len(resp.GetEntries()) > 0 {
			return wrapErr(errors.New("sync authorized entries: unexpected entries among revisions"))
		}
		for _, rev := range resp.GetEntryRevisions() {
			if rev.GetId() == "" || rev.GetRevisionNumber() < 0 {
				s.log.Warn("Received malformed entry revision from the server", telemetry.EntryID, rev.GetId())
				continue
			}
			seen[rev.GetId()] = struct{}{}
			if cached, ok := s.entries[rev.GetId()]; !ok || entryIsStale(cached, rev.GetRevisionNumber(), rev.GetCreatedAt()) {
				need = append(need, rev.GetId())
			}
		}
		if !resp.GetMore() {
			break
		}
		if resp, err = stream.Recv(); err != nil {
			return fmt.Errorf("sync authorized entries: %w", err)
		}
	}
	slices.Sort(need)
	for len(need) > 0 {
		n := min(len(need), pageSize)
		if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{Ids: need[:n]}); err != nil {
			return fmt.Errorf("sync authorized entries: %w", recvErr(stream, err))
		}
		need = need[n:]
		for {
			resp, err := stream.Recv()
			if err != nil {
				return fmt.Errorf("sync authorized entries: %w", err)
			}
			if len(resp.GetEntryRevisions()) > 0 {
				return wrapErr(errors.New("sync authorized entries: unexpected revisions among entries"))
			}
			for _, e := range resp.GetEntries() {
				if _, ok := seen[e.GetId()]; !ok {
					continue // not in the authorized set announced above
				}
				s.entries[e.GetId()] = e
			}
			if !resp.GetMore() {
				break
			}
		}
	}
	return finish()
}

// recvErr returns the stream's status when a Send failed because the server
// ended the stream (Send then reports only io.EOF).
func recvErr(stream grpc.ClientStream, sendErr error) error {
	if err := stream.RecvMsg(new(entryv1.SyncAuthorizedEntriesResponse)); err != nil {
		return err
	}
	return sendErr
}

// entryIsStale reports whether a cached entry differs from the revision the
// server announced: another revision number, or another creation time (the
// entry was deleted and created again with the same ID).
func entryIsStale(e *types.Entry, revision, createdAt int64) bool {
	if e.GetRevisionNumber() != revision {
		return true
	}
	return createdAt != 0 && e.GetCreatedAt() != createdAt
}
