package entry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// callerEntries returns the entries the calling agent is authorized for,
// sorted by ID.
func (s *Service) callerEntries(ctx context.Context, log *slog.Logger, method string) ([]*datastore.Entry, error) {
	if s.authorized == nil {
		return nil, status.Errorf(codes.Unimplemented, "method %s not implemented", method)
	}
	caller, ok := api.CallerFrom(ctx)
	if !ok || caller.ID.IsZero() {
		return nil, api.MakeErr(log, codes.Internal, "caller ID missing from request context", nil)
	}
	return s.authorized.AuthorizedEntries(caller.ID.String()), nil
}

func toProto(log *slog.Logger, e *datastore.Entry, mask *types.EntryMask) *types.Entry {
	pe, err := api.ProtoFromEntry(e)
	if err != nil {
		log.Error("Failed to convert entry", slog.String(api.KeyEntryID, e.ID), slog.String(api.KeyError, err.Error()))
		return nil
	}
	api.ApplyEntryMask(pe, mask)
	return pe
}

// GetAuthorizedEntries returns every entry the calling agent is authorized
// for, in one message. Agents with many entries should use
// SyncAuthorizedEntries, which pages.
func (s *Service) GetAuthorizedEntries(ctx context.Context, req *entryv1.GetAuthorizedEntriesRequest) (*entryv1.GetAuthorizedEntriesResponse, error) {
	log := api.Logger(ctx)
	entries, err := s.callerEntries(ctx, log, "GetAuthorizedEntries")
	if err != nil {
		return nil, err
	}
	resp := &entryv1.GetAuthorizedEntriesResponse{Entries: make([]*types.Entry, 0, len(entries))}
	for _, e := range entries {
		if pe := toProto(log, e, req.OutputMask); pe != nil {
			resp.Entries = append(resp.Entries, pe)
		}
	}
	return resp, nil
}

// SyncAuthorizedEntries is SPIRE's paged sync: when the agent's entries fit
// in one page they are sent whole; otherwise the server sends pages of (ID,
// revision) pairs and then, for each request of IDs the agent needs, pages
// of full entries, with More set on every page but the last. The output mask
// of the first request applies throughout and may not mask the revision.
func (s *Service) SyncAuthorizedEntries(stream entryv1.Entry_SyncAuthorizedEntriesServer) error {
	ctx := stream.Context()
	log := api.Logger(ctx)
	entries, err := s.callerEntries(ctx, log, "SyncAuthorizedEntries")
	if err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	if len(req.Ids) > 0 {
		return api.MakeErr(log, codes.InvalidArgument, "specifying IDs on initial request is not supported", nil)
	}
	mask := req.OutputMask
	if mask != nil && !mask.RevisionNumber {
		return api.MakeErr(log, codes.InvalidArgument, "revision number cannot be masked", nil)
	}

	if len(entries) <= s.pageSize {
		resp := &entryv1.SyncAuthorizedEntriesResponse{Entries: make([]*types.Entry, 0, len(entries))}
		for _, e := range entries {
			if pe := toProto(log, e, mask); pe != nil {
				resp.Entries = append(resp.Entries, pe)
			}
		}
		return stream.Send(resp)
	}

	for i := 0; i < len(entries); i += s.pageSize {
		page := entries[i:min(i+s.pageSize, len(entries))]
		revs := make([]*entryv1.EntryRevision, 0, len(page))
		for _, e := range page {
			revs = append(revs, &entryv1.EntryRevision{Id: e.ID, RevisionNumber: e.RevisionNumber, CreatedAt: e.CreatedAt})
		}
		more := i+s.pageSize < len(entries)
		if err := stream.Send(&entryv1.SyncAuthorizedEntriesResponse{EntryRevisions: revs, More: more}); err != nil {
			return err
		}
	}

	// entries is sorted by ID (the index's order); serve the requested IDs.
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		// As SPIRE, answer in ID order whatever the request order.
		reqIDs := slices.Clone(req.Ids)
		slices.Sort(reqIDs)
		reqIDs = slices.Compact(reqIDs)
		resp := &entryv1.SyncAuthorizedEntriesResponse{}
		for _, id := range reqIDs {
			i, found := slices.BinarySearchFunc(entries, id, func(e *datastore.Entry, id string) int { return strings.Compare(e.ID, id) })
			if !found {
				continue
			}
			if len(resp.Entries) == s.pageSize {
				resp.More = true
				if err := stream.Send(resp); err != nil {
					return err
				}
				resp = &entryv1.SyncAuthorizedEntriesResponse{}
			}
			if pe := toProto(log, entries[i], mask); pe != nil {
				resp.Entries = append(resp.Entries, pe)
			}
		}
		resp.More = false
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
