// Package entry implements the spire.api.server.entry.v1 Entry service:
// counting, listing, reading, creating, updating and deleting registration
// entries, with SPIRE 1.13's validation, codes and messages. It owns no
// storage: entries live in the datastore, reached through the Store
// interface. The agent-facing RPCs (GetAuthorizedEntries,
// SyncAuthorizedEntries) are served from the in-memory authorized-entry
// index, never from the datastore, when one is configured (Authorized) and
// are Unimplemented otherwise.
package entry

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Store is the part of the datastore the entry service uses; *datastore.Store
// satisfies it.
type Store interface {
	CountEntries(ctx context.Context, req *datastore.ListEntriesRequest) (int32, error)
	ListEntries(ctx context.Context, req *datastore.ListEntriesRequest) ([]*datastore.Entry, string, error)
	FetchEntry(ctx context.Context, id string) (*datastore.Entry, error)
	CreateEntry(ctx context.Context, e *datastore.Entry) (*datastore.Entry, error)
	UpdateEntry(ctx context.Context, e *datastore.Entry, mask *datastore.EntryMask) (*datastore.Entry, error)
	DeleteEntry(ctx context.Context, id string) (*datastore.Entry, error)
}

// Config configures a Service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	// Changed, when set, is called after a batch that may have changed
	// entries, so that the authorized-entry index reads the change log now.
	Changed func()
	// Authorized, when set, serves the agent RPCs GetAuthorizedEntries and
	// SyncAuthorizedEntries; they are Unimplemented without it.
	Authorized Authorized
	// EntryPageSize is the page size of SyncAuthorizedEntries (default 500).
	EntryPageSize int
}

// Authorized answers which entries an agent is authorized for;
// *index.Index satisfies it.
type Authorized interface {
	AuthorizedEntries(agentID string) []*datastore.Entry
}

// Service serves the Entry API. It is safe for concurrent use.
type Service struct {
	entryv1.UnsafeEntryServer

	td         spiffeid.TrustDomain
	store      Store
	changed    func()
	authorized Authorized
	pageSize   int
}

// New returns the Entry service.
func New(c Config) (*Service, error) {
	if c.TrustDomain.IsZero() {
		return nil, errors.New("entry: trust domain is required")
	}
	if c.Store == nil {
		return nil, errors.New("entry: store is required")
	}
	if c.Changed == nil {
		c.Changed = func() {}
	}
	if c.EntryPageSize <= 0 {
		c.EntryPageSize = 500
	}
	return &Service{td: c.TrustDomain, store: c.Store, changed: c.Changed, authorized: c.Authorized, pageSize: c.EntryPageSize}, nil
}

// Register registers the service on s.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	entryv1.RegisterEntryServer(r, s)
}

// filter is the fields CountEntries and ListEntries filters share.
type filter interface {
	GetByParentId() *types.SPIFFEID
	GetBySpiffeId() *types.SPIFFEID
	GetBySelectors() *types.SelectorMatch
	GetByFederatesWith() *types.FederatesWithMatch
}

// listRequest converts a filter; hint and downstream are set by the caller
// because their getters differ in type between the two requests.
func (s *Service) listRequest(log *slog.Logger, f filter) (*datastore.ListEntriesRequest, error) {
	req := &datastore.ListEntriesRequest{}
	if f == nil {
		return req, nil
	}
	if p := f.GetByParentId(); p != nil {
		id, err := api.MemberIDFromProto(s.td, p)
		if err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "malformed parent ID filter", err)
		}
		req.ByParentID = id.String()
	}
	if p := f.GetBySpiffeId(); p != nil {
		id, err := api.WorkloadIDFromProto(s.td, p)
		if err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "malformed SPIFFE ID filter", err)
		}
		req.BySPIFFEID = id.String()
	}
	if m := f.GetBySelectors(); m != nil {
		sels, err := api.SelectorsFromProto(m.Selectors)
		if err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "malformed selectors filter", err)
		}
		if len(sels) == 0 {
			return nil, api.MakeErr(log, codes.InvalidArgument, "malformed selectors filter", api.Publicf("empty selector set"))
		}
		match, err := api.MatchFromProto(m.Match)
		if err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "malformed selectors filter", err)
		}
		req.BySelectors = &datastore.BySelectors{Selectors: sels, Match: match}
	}
	if m := f.GetByFederatesWith(); m != nil {
		tds := make([]string, 0, len(m.TrustDomains))
		for _, name := range m.TrustDomains {
			td, err := api.TrustDomainFromString(name)
			if err != nil {
				return nil, api.MakeErr(log, codes.InvalidArgument, "malformed federates with filter", err)
			}
			tds = append(tds, td.IDString())
		}
		if len(tds) == 0 {
			return nil, api.MakeErr(log, codes.InvalidArgument, "malformed federates with filter", api.Publicf("empty trust domain set"))
		}
		match, err := api.FederatesWithMatchFromProto(m.Match)
		if err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "malformed federates with filter", err)
		}
		req.ByFederatesWith = &datastore.ByFederatesWith{TrustDomains: tds, Match: match}
	}
	return req, nil
}

// CountEntries returns the number of entries matching the filter.
func (s *Service) CountEntries(ctx context.Context, req *entryv1.CountEntriesRequest) (*entryv1.CountEntriesResponse, error) {
	log := api.Logger(ctx)
	var f filter
	if req.Filter != nil {
		f = req.Filter
	}
	lr, err := s.listRequest(log, f)
	if err != nil {
		return nil, err
	}
	if req.Filter != nil {
		if req.Filter.ByHint != nil {
			lr.ByHint = req.Filter.ByHint.GetValue()
		}
		if req.Filter.ByDownstream != nil {
			v := req.Filter.ByDownstream.GetValue()
			lr.ByDownstream = &v
		}
	}
	n, err := s.store.CountEntries(ctx, lr)
	if err != nil {
		return nil, api.MakeErr(log, api.ReadCode(err), "failed to count entries", err)
	}
	return &entryv1.CountEntriesResponse{Count: n}, nil
}

// ListEntries returns the entries matching the filter, a page at a time
// when page_size is set (capped at api.MaxPageSize).
func (s *Service) ListEntries(ctx context.Context, req *entryv1.ListEntriesRequest) (*entryv1.ListEntriesResponse, error) {
	log := api.Logger(ctx)
	var f filter
	if req.Filter != nil {
		f = req.Filter
	}
	lr, err := s.listRequest(log, f)
	if err != nil {
		return nil, err
	}
	if req.Filter != nil {
		if req.Filter.ByHint != nil {
			lr.ByHint = req.Filter.ByHint.GetValue()
		}
		if req.Filter.ByDownstream != nil {
			v := req.Filter.ByDownstream.GetValue()
			lr.ByDownstream = &v
		}
	}
	lr.Pagination = api.Pagination(req.PageSize, req.PageToken)
	entries, next, err := s.store.ListEntries(ctx, lr)
	if err != nil {
		return nil, api.MakeErr(log, api.ReadCode(err), "failed to list entries", err)
	}
	resp := &entryv1.ListEntriesResponse{NextPageToken: next, Entries: make([]*types.Entry, 0, len(entries))}
	for _, e := range entries {
		pe, err := api.ProtoFromEntry(e)
		if err != nil {
			log.Error("Failed to convert entry", slog.String(api.KeyEntryID, e.ID), slog.String(api.KeyError, err.Error()))
			continue
		}
		api.ApplyEntryMask(pe, req.OutputMask)
		resp.Entries = append(resp.Entries, pe)
	}
	return resp, nil
}

// GetEntry returns one entry by ID.
func (s *Service) GetEntry(ctx context.Context, req *entryv1.GetEntryRequest) (*types.Entry, error) {
	log := api.Logger(ctx)
	if req.Id == "" {
		return nil, api.MakeErr(log, codes.InvalidArgument, "missing ID", nil)
	}
	log = log.With(slog.String(api.KeyEntryID, req.Id))
	e, err := s.store.FetchEntry(ctx, req.Id)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, "entry not found", nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to fetch entry", err)
	}
	pe, err := api.ProtoFromEntry(e)
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to convert entry", err)
	}
	api.ApplyEntryMask(pe, req.OutputMask)
	return pe, nil
}

// BatchDeleteEntry deletes entries by ID, with a status per ID.
func (s *Service) BatchDeleteEntry(ctx context.Context, req *entryv1.BatchDeleteEntryRequest) (*entryv1.BatchDeleteEntryResponse, error) {
	log := api.Logger(ctx)
	results := make([]*entryv1.BatchDeleteEntryResponse_Result, 0, len(req.Ids))
	for _, id := range req.Ids {
		results = append(results, &entryv1.BatchDeleteEntryResponse_Result{Id: id, Status: s.deleteEntry(ctx, log, id)})
	}
	s.changed()
	return &entryv1.BatchDeleteEntryResponse{Results: results}, nil
}

func (s *Service) deleteEntry(ctx context.Context, log *slog.Logger, id string) *types.Status {
	if id == "" {
		return api.MakeStatus(log, codes.InvalidArgument, "missing entry ID", nil)
	}
	log = log.With(slog.String(api.KeyEntryID, id))
	_, err := s.store.DeleteEntry(ctx, id)
	switch {
	case err == nil:
		return api.OK()
	case errors.Is(err, datastore.ErrNotFound):
		return api.MakeStatus(log, codes.NotFound, "entry not found", nil)
	default:
		return api.MakeStatus(log, codes.Internal, "failed to delete entry", err)
	}
}
