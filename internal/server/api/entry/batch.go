package entry

import (
	"context"
	"errors"
	"log/slog"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// BatchCreateEntry creates entries, with a status per entry in request
// order. An entry similar to an existing one (same SPIFFE ID, parent ID and
// selectors) is not created: its result is AlreadyExists "similar entry
// already exists" with the existing entry, as in SPIRE.
//
// When the store can create many entries in one transaction
// (BatchCreator), the valid entries of the request are written together.
func (s *Service) BatchCreateEntry(ctx context.Context, req *entryv1.BatchCreateEntryRequest) (*entryv1.BatchCreateEntryResponse, error) {
	log := api.Logger(ctx)
	results := make([]*entryv1.BatchCreateEntryResponse_Result, len(req.Entries))
	bc, batch := s.store.(BatchCreator)
	if !batch || len(req.Entries) < 2 {
		for i, pe := range req.Entries {
			results[i] = s.createEntry(ctx, log, pe, req.OutputMask)
		}
		s.changed()
		return &entryv1.BatchCreateEntryResponse{Results: results}, nil
	}

	valid := make([]*datastore.Entry, 0, len(req.Entries))
	index := make([]int, 0, len(req.Entries))
	for i, pe := range req.Entries {
		e, st := s.convertForCreate(log, pe)
		if st != nil {
			results[i] = &entryv1.BatchCreateEntryResponse_Result{Status: st}
			continue
		}
		valid = append(valid, e)
		index = append(index, i)
	}
	if len(valid) > 0 {
		created, errs, err := bc.CreateEntries(ctx, valid)
		for j, i := range index {
			l := log.With(slog.String(api.KeySPIFFEID, valid[j].SPIFFEID))
			if err != nil {
				results[i] = &entryv1.BatchCreateEntryResponse_Result{
					Status: api.MakeStatus(l, codes.Internal, "failed to create entry", err),
				}
				continue
			}
			results[i] = s.createResult(l, created[j], errs[j], req.OutputMask)
		}
	}
	s.changed()
	return &entryv1.BatchCreateEntryResponse{Results: results}, nil
}

// BatchCreator is the optional power of a store to create many entries in
// one transaction, with a refusal per entry; *datastore.Store has it.
type BatchCreator interface {
	CreateEntries(ctx context.Context, entries []*datastore.Entry) ([]*datastore.Entry, []error, error)
}

// convertForCreate validates a requested entry; on failure it returns the
// item's status.
func (s *Service) convertForCreate(log *slog.Logger, pe *types.Entry) (*datastore.Entry, *types.Status) {
	e, err := api.EntryFromProto(s.td, pe, nil)
	if err != nil {
		return nil, api.MakeStatus(log, codes.InvalidArgument, "failed to convert entry", err)
	}
	e.RevisionNumber = 0
	if err := api.ValidateNewEntry(e); err != nil {
		return nil, api.MakeStatus(log, codes.InvalidArgument, "failed to create entry", err)
	}
	return e, nil
}

func (s *Service) createEntry(ctx context.Context, log *slog.Logger, pe *types.Entry, mask *types.EntryMask) *entryv1.BatchCreateEntryResponse_Result {
	e, st := s.convertForCreate(log, pe)
	if st != nil {
		return &entryv1.BatchCreateEntryResponse_Result{Status: st}
	}
	log = log.With(slog.String(api.KeySPIFFEID, e.SPIFFEID))
	created, err := s.store.CreateEntry(ctx, e)
	return s.createResult(log, created, err, mask)
}

// createResult builds the result of one create from the store's answer.
func (s *Service) createResult(log *slog.Logger, created *datastore.Entry, err error, mask *types.EntryMask) *entryv1.BatchCreateEntryResponse_Result {
	st := api.OK()
	var similar *datastore.SimilarEntryError
	switch {
	case errors.As(err, &similar) && similar.Existing != nil:
		created = similar.Existing
		st = api.CreateStatus(codes.AlreadyExists, "similar entry already exists")
	case err != nil:
		return &entryv1.BatchCreateEntryResponse_Result{
			Status: api.MakeStatus(log, api.StoreCode(err), "failed to create entry", err),
		}
	}
	out, err := api.ProtoFromEntry(created)
	if err != nil {
		return &entryv1.BatchCreateEntryResponse_Result{Status: api.MakeStatus(log, codes.Internal, "failed to convert entry", err)}
	}
	api.ApplyEntryMask(out, mask)
	return &entryv1.BatchCreateEntryResponse_Result{Status: st, Entry: out}
}

// BatchUpdateEntry updates entries, with a status per entry. The input mask
// says which fields are replaced (nil: all); the output mask which are
// returned. Like SPIRE, an update may make an entry identical to another.
func (s *Service) BatchUpdateEntry(ctx context.Context, req *entryv1.BatchUpdateEntryRequest) (*entryv1.BatchUpdateEntryResponse, error) {
	log := api.Logger(ctx)
	results := make([]*entryv1.BatchUpdateEntryResponse_Result, 0, len(req.Entries))
	for _, pe := range req.Entries {
		results = append(results, s.updateEntry(ctx, log, pe, req.InputMask, req.OutputMask))
	}
	s.changed()
	return &entryv1.BatchUpdateEntryResponse{Results: results}, nil
}

func (s *Service) updateEntry(ctx context.Context, log *slog.Logger, pe *types.Entry, in, out *types.EntryMask) *entryv1.BatchUpdateEntryResponse_Result {
	if pe != nil {
		log = log.With(slog.String(api.KeyEntryID, pe.Id))
	}
	e, err := api.EntryFromProto(s.td, pe, in)
	if err != nil {
		return &entryv1.BatchUpdateEntryResponse_Result{Status: api.MakeStatus(log, codes.InvalidArgument, "failed to convert entry", err)}
	}
	mask := api.EntryMaskFromProto(in)
	final := e
	if mask != nil && (mask.Selectors != mask.StoreSVID) {
		// The store-SVID rule is about the resulting entry: merge with the
		// stored one when only one of the two fields changes.
		cur, err := s.store.FetchEntry(ctx, e.ID)
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			return &entryv1.BatchUpdateEntryResponse_Result{Status: api.MakeStatus(log, codes.NotFound, "failed to update entry", nil)}
		case err != nil:
			return &entryv1.BatchUpdateEntryResponse_Result{Status: api.MakeStatus(log, codes.Internal, "failed to update entry", err)}
		}
		merged := *e
		if !mask.Selectors {
			merged.Selectors = cur.Selectors
		}
		if !mask.StoreSVID {
			merged.StoreSVID = cur.StoreSVID
		}
		final = &merged
	}
	if err := api.ValidateEntryUpdate(final, mask); err != nil {
		return &entryv1.BatchUpdateEntryResponse_Result{Status: api.MakeStatus(log, codes.InvalidArgument, "failed to update entry", err)}
	}
	updated, err := s.store.UpdateEntry(ctx, e, mask)
	if err != nil {
		return &entryv1.BatchUpdateEntryResponse_Result{Status: api.MakeStatus(log, api.StoreCode(err), "failed to update entry", err)}
	}
	pu, err := api.ProtoFromEntry(updated)
	if err != nil {
		return &entryv1.BatchUpdateEntryResponse_Result{Status: api.MakeStatus(log, codes.Internal, "failed to convert entry in updateEntry", err)}
	}
	api.ApplyEntryMask(pu, out)
	return &entryv1.BatchUpdateEntryResponse_Result{Status: api.OK(), Entry: pu}
}
