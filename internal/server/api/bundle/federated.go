package bundle

import (
	"context"
	"errors"
	"log/slog"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// BatchCreateFederatedBundle creates bundles of other trust domains; an
// existing one is AlreadyExists "bundle already exists".
func (s *Service) BatchCreateFederatedBundle(ctx context.Context, req *bundlev1.BatchCreateFederatedBundleRequest) (*bundlev1.BatchCreateFederatedBundleResponse, error) {
	results := make([]*bundlev1.BatchCreateFederatedBundleResponse_Result, 0, len(req.Bundle))
	for _, b := range req.Bundle {
		pb, st := s.createFederated(ctx, b, req.OutputMask)
		results = append(results, &bundlev1.BatchCreateFederatedBundleResponse_Result{Status: st, Bundle: pb})
	}
	return &bundlev1.BatchCreateFederatedBundleResponse{Results: results}, nil
}

func (s *Service) createFederated(ctx context.Context, b *types.Bundle, mask *types.BundleMask) (*types.Bundle, *types.Status) {
	log := api.Logger(ctx).With(slog.String(api.KeyTrustDomain, b.GetTrustDomain()))
	if _, st := s.federated(log, b.GetTrustDomain(), "creating"); st != nil {
		return nil, st
	}
	db, err := api.BundleFromProto(b)
	if err != nil {
		return nil, api.MakeStatus(log, codes.InvalidArgument, "failed to convert bundle", err)
	}
	created, err := s.store.CreateBundle(ctx, db)
	switch {
	case errors.Is(err, datastore.ErrAlreadyExists):
		return nil, api.MakeStatus(log, codes.AlreadyExists, "bundle already exists", nil)
	case err != nil:
		return nil, api.MakeStatus(log, codes.Internal, "unable to create bundle", err)
	}
	log.Debug("Federated bundle created")
	return bundleResult(log, created, mask)
}

// BatchSetFederatedBundle creates or replaces bundles of other trust domains.
func (s *Service) BatchSetFederatedBundle(ctx context.Context, req *bundlev1.BatchSetFederatedBundleRequest) (*bundlev1.BatchSetFederatedBundleResponse, error) {
	results := make([]*bundlev1.BatchSetFederatedBundleResponse_Result, 0, len(req.Bundle))
	for _, b := range req.Bundle {
		pb, st := s.setFederated(ctx, b, req.OutputMask)
		results = append(results, &bundlev1.BatchSetFederatedBundleResponse_Result{Status: st, Bundle: pb})
	}
	return &bundlev1.BatchSetFederatedBundleResponse{Results: results}, nil
}

func (s *Service) setFederated(ctx context.Context, b *types.Bundle, mask *types.BundleMask) (*types.Bundle, *types.Status) {
	log := api.Logger(ctx).With(slog.String(api.KeyTrustDomain, b.GetTrustDomain()))
	if _, st := s.federated(log, b.GetTrustDomain(), "setting"); st != nil {
		return nil, st
	}
	db, err := api.BundleFromProto(b)
	if err != nil {
		return nil, api.MakeStatus(log, codes.InvalidArgument, "failed to convert bundle", err)
	}
	set, err := s.store.SetBundle(ctx, db)
	if err != nil {
		return nil, api.MakeStatus(log, codes.Internal, "failed to set bundle", err)
	}
	log.Info("Bundle set successfully")
	return bundleResult(log, set, mask)
}

// BatchUpdateFederatedBundle updates existing bundles of other trust
// domains; the input mask says which fields are replaced (nil: all).
func (s *Service) BatchUpdateFederatedBundle(ctx context.Context, req *bundlev1.BatchUpdateFederatedBundleRequest) (*bundlev1.BatchUpdateFederatedBundleResponse, error) {
	results := make([]*bundlev1.BatchUpdateFederatedBundleResponse_Result, 0, len(req.Bundle))
	for _, b := range req.Bundle {
		pb, st := s.updateFederated(ctx, b, req.InputMask, req.OutputMask)
		results = append(results, &bundlev1.BatchUpdateFederatedBundleResponse_Result{Status: st, Bundle: pb})
	}
	return &bundlev1.BatchUpdateFederatedBundleResponse{Results: results}, nil
}

func (s *Service) updateFederated(ctx context.Context, b *types.Bundle, in, out *types.BundleMask) (*types.Bundle, *types.Status) {
	log := api.Logger(ctx).With(slog.String(api.KeyTrustDomain, b.GetTrustDomain()))
	if _, st := s.federated(log, b.GetTrustDomain(), "updating"); st != nil {
		return nil, st
	}
	db, err := api.BundleFromProto(b)
	if err != nil {
		return nil, api.MakeStatus(log, codes.InvalidArgument, "failed to convert bundle", err)
	}
	updated, err := s.store.UpdateBundleFunc(ctx, db.TrustDomain, func(cur *datastore.Bundle) error {
		if in == nil || in.X509Authorities {
			cur.X509Authorities = db.X509Authorities
		}
		if in == nil || in.JwtAuthorities {
			cur.JWTAuthorities = db.JWTAuthorities
		}
		if in == nil || in.RefreshHint {
			cur.RefreshHint = db.RefreshHint
		}
		if in == nil || in.SequenceNumber {
			cur.SequenceNumber = db.SequenceNumber
		}
		return nil
	})
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeStatus(log, codes.NotFound, "bundle not found", nil)
	case err != nil:
		return nil, api.MakeStatus(log, codes.Internal, "failed to update bundle", err)
	}
	log.Debug("Federated bundle updated")
	return bundleResult(log, updated, out)
}

// BatchDeleteFederatedBundle deletes bundles of other trust domains. Mode
// RESTRICT (default) refuses while entries federate with the bundle;
// DELETE deletes those entries; DISSOCIATE removes the trust domain from them.
func (s *Service) BatchDeleteFederatedBundle(ctx context.Context, req *bundlev1.BatchDeleteFederatedBundleRequest) (*bundlev1.BatchDeleteFederatedBundleResponse, error) {
	log := api.Logger(ctx)
	var mode datastore.BundleDeleteMode
	switch req.Mode {
	case bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT:
		mode = datastore.BundleDeleteRestrict
	case bundlev1.BatchDeleteFederatedBundleRequest_DELETE:
		mode = datastore.BundleDeleteDelete
	case bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE:
		mode = datastore.BundleDeleteDissociate
	default:
		return nil, api.MakeErr(log, codes.InvalidArgument, "failed to parse deletion mode", api.Publicf("unhandled delete mode %q", req.Mode))
	}
	log = log.With(slog.String(api.KeyMode, req.Mode.String()))
	results := make([]*bundlev1.BatchDeleteFederatedBundleResponse_Result, 0, len(req.TrustDomains))
	for _, name := range req.TrustDomains {
		results = append(results, &bundlev1.BatchDeleteFederatedBundleResponse_Result{
			TrustDomain: name,
			Status:      s.deleteFederated(ctx, log, name, mode),
		})
	}
	return &bundlev1.BatchDeleteFederatedBundleResponse{Results: results}, nil
}

func (s *Service) deleteFederated(ctx context.Context, log *slog.Logger, name string, mode datastore.BundleDeleteMode) *types.Status {
	log = log.With(slog.String(api.KeyTrustDomain, name))
	td, err := api.TrustDomainFromString(name)
	if err != nil {
		return api.MakeStatus(log, codes.InvalidArgument, "trust domain argument is not valid", err)
	}
	if td == s.td {
		return api.MakeStatus(log, codes.InvalidArgument, "removing the bundle for the server trust domain is not allowed", nil)
	}
	err = s.store.DeleteBundle(ctx, td.IDString(), mode)
	var inUse *datastore.BundleInUseError
	switch {
	case err == nil:
		return api.OK()
	case errors.Is(err, datastore.ErrNotFound):
		return api.MakeStatus(log, codes.NotFound, "bundle not found", nil)
	case errors.As(err, &inUse):
		// SPIRE's wording, with its datastore prefix.
		return api.MakeStatus(log, codes.FailedPrecondition, "failed to delete federated bundle",
			api.Publicf("datastore-sql: cannot delete bundle; federated with %d registration entries", inUse.Entries))
	default:
		return api.MakeStatus(log, api.StoreCode(err), "failed to delete federated bundle", err)
	}
}
