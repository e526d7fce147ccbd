// Package trustdomain implements the spire.api.server.trustdomain.v1
// TrustDomain service: CRUD of federation relationships, stored in the
// datastore, with SPIRE 1.13's codes and messages. Fetching bundles from
// federated endpoints belongs to the federation issue: until a Refresher is
// configured, RefreshBundle fails with Internal for a known relationship.
package trustdomain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Store is the part of the datastore the service uses; *datastore.Store
// satisfies it. Trust domains are names ("example.org").
type Store interface {
	CreateFederationRelationship(ctx context.Context, fr *datastore.FederationRelationship) (*datastore.FederationRelationship, error)
	FetchFederationRelationship(ctx context.Context, td string) (*datastore.FederationRelationship, error)
	ListFederationRelationships(ctx context.Context, p *datastore.Pagination) ([]*datastore.FederationRelationship, string, error)
	UpdateFederationRelationship(ctx context.Context, fr *datastore.FederationRelationship) (*datastore.FederationRelationship, error)
	DeleteFederationRelationship(ctx context.Context, td string) error
}

// Refresher fetches a federated bundle from its endpoint now.
type Refresher interface {
	RefreshBundleFor(ctx context.Context, td spiffeid.TrustDomain) error
}

// Config configures a Service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	// Refresher, when set, serves RefreshBundle.
	Refresher Refresher
	// Changed, when set, is called after relationships changed.
	Changed func()
}

// Service serves the TrustDomain API. It is safe for concurrent use.
type Service struct {
	trustdomainv1.UnsafeTrustDomainServer

	td        spiffeid.TrustDomain
	store     Store
	refresher Refresher
	changed   func()
}

// New returns the TrustDomain service.
func New(c Config) (*Service, error) {
	if c.TrustDomain.IsZero() {
		return nil, errors.New("trustdomain: trust domain is required")
	}
	if c.Store == nil {
		return nil, errors.New("trustdomain: store is required")
	}
	if c.Changed == nil {
		c.Changed = func() {}
	}
	return &Service{td: c.TrustDomain, store: c.Store, refresher: c.Refresher, changed: c.Changed}, nil
}

// Register registers the service on r.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	trustdomainv1.RegisterTrustDomainServer(r, s)
}

// ListFederationRelationships lists relationships, a page at a time when
// page_size is set.
func (s *Service) ListFederationRelationships(ctx context.Context, req *trustdomainv1.ListFederationRelationshipsRequest) (*trustdomainv1.ListFederationRelationshipsResponse, error) {
	log := api.Logger(ctx)
	frs, next, err := s.store.ListFederationRelationships(ctx, api.Pagination(req.PageSize, req.PageToken))
	if err != nil {
		return nil, api.MakeErr(log, api.ReadCode(err), "failed to list federation relationships", err)
	}
	resp := &trustdomainv1.ListFederationRelationshipsResponse{NextPageToken: next, FederationRelationships: make([]*types.FederationRelationship, 0, len(frs))}
	for _, fr := range frs {
		p, err := api.ProtoFromFederation(fr, req.OutputMask)
		if err != nil {
			return nil, api.MakeErr(log, codes.Internal, "failed to convert datastore response", err)
		}
		resp.FederationRelationships = append(resp.FederationRelationships, p)
	}
	return resp, nil
}

// GetFederationRelationship returns the relationship with one trust domain.
func (s *Service) GetFederationRelationship(ctx context.Context, req *trustdomainv1.GetFederationRelationshipRequest) (*types.FederationRelationship, error) {
	log := api.Logger(ctx).With(slog.String(api.KeyTrustDomain, req.TrustDomain))
	td, err := api.TrustDomainFromString(req.TrustDomain)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "failed to parse trust domain", err)
	}
	fr, err := s.store.FetchFederationRelationship(ctx, td.Name())
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, "federation relationship does not exist", nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to fetch federation relationship", err)
	}
	p, err := api.ProtoFromFederation(fr, req.OutputMask)
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to convert datastore response", err)
	}
	return p, nil
}

// BatchCreateFederationRelationship creates relationships, with a status
// per item. The server's own trust domain is refused.
func (s *Service) BatchCreateFederationRelationship(ctx context.Context, req *trustdomainv1.BatchCreateFederationRelationshipRequest) (*trustdomainv1.BatchCreateFederationRelationshipResponse, error) {
	results := make([]*trustdomainv1.BatchCreateFederationRelationshipResponse_Result, 0, len(req.FederationRelationships))
	for _, fr := range req.FederationRelationships {
		p, st := s.create(ctx, fr, req.OutputMask)
		results = append(results, &trustdomainv1.BatchCreateFederationRelationshipResponse_Result{Status: st, FederationRelationship: p})
	}
	s.changed()
	return &trustdomainv1.BatchCreateFederationRelationshipResponse{Results: results}, nil
}

func (s *Service) create(ctx context.Context, in *types.FederationRelationship, mask *types.FederationRelationshipMask) (*types.FederationRelationship, *types.Status) {
	log := api.Logger(ctx).With(slog.String(api.KeyTrustDomain, in.GetTrustDomain()))
	fr, err := api.FederationFromProto(in, nil)
	if err != nil {
		return nil, api.MakeStatus(log, codes.InvalidArgument, "failed to convert federation relationship", err)
	}
	if fr.TrustDomain == s.td.Name() {
		return nil, api.MakeStatus(log, codes.InvalidArgument, "unable to create federation relationship for server trust domain", nil)
	}
	created, err := s.store.CreateFederationRelationship(ctx, fr)
	if err != nil {
		// SPIRE reports every store failure here, a duplicate included, as Internal.
		return nil, api.MakeStatus(log, codes.Internal, "failed to create federation relationship", err)
	}
	p, err := api.ProtoFromFederation(created, mask)
	if err != nil {
		return nil, api.MakeStatus(log, codes.Internal, "failed to convert datastore response", err)
	}
	log.Debug("Federation relationship created")
	return p, api.OK()
}

// BatchUpdateFederationRelationship updates relationships; the input mask
// says which fields are replaced (nil: all).
func (s *Service) BatchUpdateFederationRelationship(ctx context.Context, req *trustdomainv1.BatchUpdateFederationRelationshipRequest) (*trustdomainv1.BatchUpdateFederationRelationshipResponse, error) {
	results := make([]*trustdomainv1.BatchUpdateFederationRelationshipResponse_Result, 0, len(req.FederationRelationships))
	for _, fr := range req.FederationRelationships {
		p, st := s.update(ctx, fr, req.InputMask, req.OutputMask)
		results = append(results, &trustdomainv1.BatchUpdateFederationRelationshipResponse_Result{Status: st, FederationRelationship: p})
	}
	s.changed()
	return &trustdomainv1.BatchUpdateFederationRelationshipResponse{Results: results}, nil
}

func (s *Service) update(ctx context.Context, in *types.FederationRelationship, inMask, outMask *types.FederationRelationshipMask) (*types.FederationRelationship, *types.Status) {
	log := api.Logger(ctx).With(slog.String(api.KeyTrustDomain, in.GetTrustDomain()))
	if inMask == nil {
		inMask = api.AllFederationFields()
	}
	fr, err := api.FederationFromProto(in, inMask)
	if err != nil {
		return nil, api.MakeStatus(log, codes.InvalidArgument, "failed to convert federation relationship", err)
	}
	cur, err := s.store.FetchFederationRelationship(ctx, fr.TrustDomain)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		// SPIRE's wording for an unknown trust domain.
		return nil, api.MakeStatus(log, codes.Internal, "failed to update federation relationship",
			api.Publicf("unable to fetch federation relationship: record not found"))
	case err != nil:
		return nil, api.MakeStatus(log, codes.Internal, "failed to update federation relationship", err)
	}
	next := *cur
	if inMask.BundleEndpointUrl {
		next.BundleEndpointURL = fr.BundleEndpointURL
	}
	if inMask.BundleEndpointProfile {
		next.BundleEndpointProfile = fr.BundleEndpointProfile
		next.EndpointSPIFFEID = fr.EndpointSPIFFEID
	}
	if inMask.TrustDomainBundle && fr.TrustDomainBundle != nil {
		next.TrustDomainBundle = fr.TrustDomainBundle
	}
	updated, err := s.store.UpdateFederationRelationship(ctx, &next)
	if err != nil {
		return nil, api.MakeStatus(log, codes.Internal, "failed to update federation relationship", err)
	}
	p, err := api.ProtoFromFederation(updated, outMask)
	if err != nil {
		return nil, api.MakeStatus(log, codes.Internal, "failed to convert federation relationship to proto", err)
	}
	log.Debug("Federation relationship updated")
	return p, api.OK()
}

// BatchDeleteFederationRelationship deletes relationships by trust domain.
func (s *Service) BatchDeleteFederationRelationship(ctx context.Context, req *trustdomainv1.BatchDeleteFederationRelationshipRequest) (*trustdomainv1.BatchDeleteFederationRelationshipResponse, error) {
	results := make([]*trustdomainv1.BatchDeleteFederationRelationshipResponse_Result, 0, len(req.TrustDomains))
	for _, name := range req.TrustDomains {
		results = append(results, s.delete(ctx, name))
	}
	s.changed()
	return &trustdomainv1.BatchDeleteFederationRelationshipResponse{Results: results}, nil
}

func (s *Service) delete(ctx context.Context, name string) *trustdomainv1.BatchDeleteFederationRelationshipResponse_Result {
	log := api.Logger(ctx)
	if name == "" {
		return &trustdomainv1.BatchDeleteFederationRelationshipResponse_Result{
			Status: api.MakeStatus(log, codes.InvalidArgument, "missing trust domain", nil),
		}
	}
	log = log.With(slog.String(api.KeyTrustDomain, name))
	td, err := api.TrustDomainFromString(name)
	if err != nil {
		return &trustdomainv1.BatchDeleteFederationRelationshipResponse_Result{
			TrustDomain: name,
			Status:      api.MakeStatus(log, codes.InvalidArgument, "failed to parse trust domain", err),
		}
	}
	err = s.store.DeleteFederationRelationship(ctx, td.Name())
	r := &trustdomainv1.BatchDeleteFederationRelationshipResponse_Result{TrustDomain: td.Name()}
	switch {
	case err == nil:
		log.Debug("Federation relationship deleted")
		r.Status = api.OK()
	case errors.Is(err, datastore.ErrNotFound):
		r.Status = api.MakeStatus(log, codes.NotFound, "federation relationship not found", nil)
	default:
		r.Status = api.MakeStatus(log, codes.Internal, "failed to delete federation relationship", err)
	}
	return r
}

// RefreshBundle fetches the bundle of a federated trust domain from its
// endpoint now. Without a Refresher it fails with Internal for a known
// relationship, NotFound for an unknown one.
func (s *Service) RefreshBundle(ctx context.Context, req *trustdomainv1.RefreshBundleRequest) (*emptypb.Empty, error) {
	log := api.Logger(ctx)
	td, err := api.TrustDomainFromString(req.GetTrustDomain())
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "failed to parse trust domain", err)
	}
	log = log.With(slog.String(api.KeyTrustDomain, td.Name()))
	_, err = s.store.FetchFederationRelationship(ctx, td.Name())
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, fmt.Sprintf("no relationship with trust domain %q", td), nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to refresh bundle", err)
	}
	if s.refresher == nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to refresh bundle", api.Publicf("bundle federation is not enabled on this server"))
	}
	if err := s.refresher.RefreshBundleFor(ctx, td); err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to refresh bundle", err)
	}
	log.Debug("Bundle refreshed")
	return &emptypb.Empty{}, nil
}
