// Package bundle implements the spire.api.server.bundle.v1 Bundle service:
// the server's own bundle (read, append) and federated bundles (list, read,
// create, update, set, delete with SPIRE's three delete modes), with SPIRE
// 1.13's codes and messages. Bundles live in the datastore, reached through
// the Store interface; this package holds no state.
package bundle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Store is the part of the datastore the bundle service uses;
// *datastore.Store satisfies it.
type Store interface {
	FetchBundle(ctx context.Context, td string) (*datastore.Bundle, error)
	ListBundles(ctx context.Context, p *datastore.Pagination) ([]*datastore.Bundle, string, error)
	CountBundles(ctx context.Context) (int32, error)
	CreateBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error)
	SetBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error)
	AppendBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error)
	UpdateBundleFunc(ctx context.Context, td string, fn func(*datastore.Bundle) error) (*datastore.Bundle, error)
	DeleteBundle(ctx context.Context, td string, mode datastore.BundleDeleteMode) error
}

// Config configures a Service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
}

// Service serves the Bundle API. It is safe for concurrent use.
type Service struct {
	bundlev1.UnsafeBundleServer

	td    spiffeid.TrustDomain
	store Store
}

// New returns the Bundle service.
func New(c Config) (*Service, error) {
	if c.TrustDomain.IsZero() {
		return nil, errors.New("bundle: trust domain is required")
	}
	if c.Store == nil {
		return nil, errors.New("bundle: store is required")
	}
	return &Service{td: c.TrustDomain, store: c.Store}, nil
}

// Register registers the service on r.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	bundlev1.RegisterBundleServer(r, s)
}

// CountBundles returns the number of bundles, the server's own included.
func (s *Service) CountBundles(ctx context.Context, _ *bundlev1.CountBundlesRequest) (*bundlev1.CountBundlesResponse, error) {
	n, err := s.store.CountBundles(ctx)
	if err != nil {
		return nil, api.MakeErr(api.Logger(ctx), codes.Internal, "failed to count bundles", err)
	}
	return &bundlev1.CountBundlesResponse{Count: n}, nil
}

// GetBundle returns the server's own bundle. Any caller may read it.
func (s *Service) GetBundle(ctx context.Context, req *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	log := api.Logger(ctx).With(slog.String(api.KeyTrustDomain, s.td.Name()))
	return s.get(ctx, log, s.td, req.OutputMask)
}

func (s *Service) get(ctx context.Context, log *slog.Logger, td spiffeid.TrustDomain, mask *types.BundleMask) (*types.Bundle, error) {
	b, err := s.store.FetchBundle(ctx, td.IDString())
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, "bundle not found", nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to fetch bundle", err)
	}
	out, err := api.ProtoFromBundle(b)
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to convert bundle", err)
	}
	api.ApplyBundleMask(out, mask)
	return out, nil
}

// AppendBundle adds X.509 and JWT authorities to the server's own bundle;
// authorities already present are not duplicated.
func (s *Service) AppendBundle(ctx context.Context, req *bundlev1.AppendBundleRequest) (*types.Bundle, error) {
	log := api.Logger(ctx)
	if len(req.JwtAuthorities) == 0 && len(req.X509Authorities) == 0 {
		return nil, api.MakeErr(log, codes.InvalidArgument, "no authorities to append", nil)
	}
	log = log.With(slog.String(api.KeyTrustDomain, s.td.Name()))
	jwts, err := api.JWTAuthoritiesFromProto(req.JwtAuthorities)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "failed to convert JWT authority", err)
	}
	x509s, err := api.X509AuthoritiesFromProto(req.X509Authorities)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "failed to convert X.509 authority", err)
	}
	b, err := s.store.AppendBundle(ctx, &datastore.Bundle{
		TrustDomain: s.td.IDString(), X509Authorities: x509s, JWTAuthorities: jwts,
	})
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to append bundle", err)
	}
	out, err := api.ProtoFromBundle(b)
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to convert bundle", err)
	}
	api.ApplyBundleMask(out, req.OutputMask)
	return out, nil
}

// PublishJWTAuthority adds a downstream server's JWT key to the server's
// own bundle and returns the bundle's JWT authorities. Without an upstream
// authority that is all SPIRE does too.
func (s *Service) PublishJWTAuthority(ctx context.Context, req *bundlev1.PublishJWTAuthorityRequest) (*bundlev1.PublishJWTAuthorityResponse, error) {
	log := api.Logger(ctx)
	if req.JwtAuthority == nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "missing JWT authority", nil)
	}
	keys, err := api.JWTAuthoritiesFromProto([]*types.JWTKey{req.JwtAuthority})
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "invalid JWT authority", err)
	}
	b, err := s.store.AppendBundle(ctx, &datastore.Bundle{TrustDomain: s.td.IDString(), JWTAuthorities: keys})
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to publish JWT key", err)
	}
	out, err := api.ProtoFromBundle(b)
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to publish JWT key", err)
	}
	return &bundlev1.PublishJWTAuthorityResponse{JwtAuthorities: out.JwtAuthorities}, nil
}

// ListFederatedBundles lists every bundle but the server's own.
func (s *Service) ListFederatedBundles(ctx context.Context, req *bundlev1.ListFederatedBundlesRequest) (*bundlev1.ListFederatedBundlesResponse, error) {
	log := api.Logger(ctx)
	bundles, next, err := s.store.ListBundles(ctx, api.Pagination(req.PageSize, req.PageToken))
	if err != nil {
		return nil, api.MakeErr(log, api.ReadCode(err), "failed to list bundles", err)
	}
	resp := &bundlev1.ListFederatedBundlesResponse{NextPageToken: next}
	for _, b := range bundles {
		td, err := spiffeid.TrustDomainFromString(b.TrustDomain)
		if err != nil {
			return nil, api.MakeErr(log.With(slog.String(api.KeyTrustDomain, b.TrustDomain)), codes.Internal, "bundle has an invalid trust domain ID", err)
		}
		if td == s.td {
			continue
		}
		pb, err := api.ProtoFromBundle(b)
		if err != nil {
			return nil, api.MakeErr(log, codes.Internal, "failed to convert bundle", err)
		}
		api.ApplyBundleMask(pb, req.OutputMask)
		resp.Bundles = append(resp.Bundles, pb)
	}
	return resp, nil
}

// GetFederatedBundle returns the bundle of another trust domain.
func (s *Service) GetFederatedBundle(ctx context.Context, req *bundlev1.GetFederatedBundleRequest) (*types.Bundle, error) {
	log := api.Logger(ctx).With(slog.String(api.KeyTrustDomain, req.TrustDomain))
	td, err := api.TrustDomainFromString(req.TrustDomain)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "trust domain argument is not valid", err)
	}
	if td == s.td {
		return nil, api.MakeErr(log, codes.InvalidArgument, "getting a federated bundle for the server's own trust domain is not allowed", nil)
	}
	return s.get(ctx, log, td, req.OutputMask)
}

// federated validates the trust domain of a federated bundle request item;
// verb names the operation in SPIRE's own-trust-domain message.
func (s *Service) federated(log *slog.Logger, name, verb string) (spiffeid.TrustDomain, *types.Status) {
	td, err := api.TrustDomainFromString(name)
	if err != nil {
		return td, api.MakeStatus(log, codes.InvalidArgument, "trust domain argument is not valid", err)
	}
	if td == s.td {
		return td, api.MakeStatus(log, codes.InvalidArgument, fmt.Sprintf("%s a federated bundle for the server's own trust domain is not allowed", verb), nil)
	}
	return td, nil
}

func bundleResult(log *slog.Logger, b *datastore.Bundle, mask *types.BundleMask) (*types.Bundle, *types.Status) {
	pb, err := api.ProtoFromBundle(b)
	if err != nil {
		return nil, api.MakeStatus(log, codes.Internal, "failed to convert bundle", err)
	}
	api.ApplyBundleMask(pb, mask)
	return pb, api.OK()
}
