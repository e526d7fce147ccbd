// Package localauthority implements the spire.api.server.localauthority.v1
// LocalAuthority service: showing, preparing, activating, tainting and
// revoking the server's X.509 and JWT authorities, and tainting or revoking
// the upstream authority that signed an old X.509 authority. The server CA
// (package ca) checks the preconditions of the local operations and words
// its refusals as SPIRE does; this package maps them to codes. The upstream
// operations are checked here and edit the trust bundle in the datastore.
package localauthority

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// CA is the part of the server CA the service uses; *ca.CA satisfies it.
type CA interface {
	X509Authorities() ca.Slots
	JWTAuthorities() ca.Slots
	IsUpstreamAuthority() bool
	PrepareX509Authority(ctx context.Context) (*ca.AuthorityInfo, error)
	ActivateX509Authority(ctx context.Context, id string) (*ca.AuthorityInfo, error)
	TaintX509Authority(ctx context.Context, id string) (*ca.AuthorityInfo, error)
	RevokeX509Authority(ctx context.Context, id string) (*ca.AuthorityInfo, error)
	PrepareJWTAuthority(ctx context.Context) (*ca.AuthorityInfo, error)
	ActivateJWTAuthority(ctx context.Context, id string) (*ca.AuthorityInfo, error)
	TaintJWTAuthority(ctx context.Context, id string) (*ca.AuthorityInfo, error)
	RevokeJWTAuthority(ctx context.Context, id string) (*ca.AuthorityInfo, error)
}

// Store is the part of the datastore the upstream operations use;
// *datastore.Store satisfies it.
type Store interface {
	UpdateBundleFunc(ctx context.Context, td string, fn func(*datastore.Bundle) error) (*datastore.Bundle, error)
}

// Config configures a Service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	CA          CA
	Store       Store
}

// Service serves the LocalAuthority API. It is safe for concurrent use.
type Service struct {
	localauthorityv1.UnsafeLocalAuthorityServer

	td    spiffeid.TrustDomain
	ca    CA
	store Store
}

// New returns the LocalAuthority service.
func New(c Config) (*Service, error) {
	switch {
	case c.TrustDomain.IsZero():
		return nil, errors.New("localauthority: trust domain is required")
	case c.CA == nil:
		return nil, errors.New("localauthority: CA is required")
	case c.Store == nil:
		return nil, errors.New("localauthority: store is required")
	}
	return &Service{td: c.TrustDomain, ca: c.CA, store: c.Store}, nil
}

// Register registers the service on r.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	localauthorityv1.RegisterLocalAuthorityServer(r, s)
}

// caErr maps a refusal of the CA to its status, with the CA's message
// verbatim (SPIRE's wording).
func caErr(log *slog.Logger, err error) error {
	var ae *ca.AuthorityError
	if !errors.As(err, &ae) {
		return api.MakeErr(log, codes.Internal, "local authority operation failed", err)
	}
	code := codes.Internal
	switch {
	case errors.Is(ae.Kind, ca.ErrNoActiveAuthority):
		code = codes.Unavailable
	case errors.Is(ae.Kind, ca.ErrInvalidAuthorityID):
		code = codes.InvalidArgument
	case errors.Is(ae.Kind, ca.ErrUpstreamConfigured):
		code = codes.FailedPrecondition
	}
	if code == codes.InvalidArgument {
		log.Error("Invalid argument: " + ae.Message)
	} else {
		log.Error(capitalize(ae.Message), slog.String(api.KeyError, err.Error()))
	}
	return status.Error(code, ae.Message)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func state(i *ca.AuthorityInfo) *localauthorityv1.AuthorityState {
	if i == nil {
		return nil
	}
	return &localauthorityv1.AuthorityState{
		AuthorityId:                   i.AuthorityID,
		ExpiresAt:                     unix(i.ExpiresAt),
		UpstreamAuthoritySubjectKeyId: i.UpstreamAuthorityID,
	}
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func logWithID(ctx context.Context, id string) *slog.Logger {
	log := api.Logger(ctx)
	if id != "" {
		log = log.With(slog.String(api.KeyAuthorityID, id))
	}
	return log
}

// GetJWTAuthorityState shows the active JWT authority and the prepared or
// old one. Unavailable while the server is initializing.
func (s *Service) GetJWTAuthorityState(ctx context.Context, _ *localauthorityv1.GetJWTAuthorityStateRequest) (*localauthorityv1.GetJWTAuthorityStateResponse, error) {
	slots := s.ca.JWTAuthorities()
	if slots.Active == nil {
		return nil, api.MakeErr(api.Logger(ctx), codes.Unavailable, "server is initializing", nil)
	}
	return &localauthorityv1.GetJWTAuthorityStateResponse{
		Active: state(slots.Active), Prepared: state(slots.Prepared), Old: state(slots.Old),
	}, nil
}

// PrepareJWTAuthority prepares a new JWT authority and publishes its key.
func (s *Service) PrepareJWTAuthority(ctx context.Context, _ *localauthorityv1.PrepareJWTAuthorityRequest) (*localauthorityv1.PrepareJWTAuthorityResponse, error) {
	info, err := s.ca.PrepareJWTAuthority(ctx)
	if err != nil {
		return nil, caErr(api.Logger(ctx), err)
	}
	st := state(info)
	st.UpstreamAuthoritySubjectKeyId = ""
	return &localauthorityv1.PrepareJWTAuthorityResponse{PreparedAuthority: st}, nil
}

// ActivateJWTAuthority makes the prepared JWT authority active.
func (s *Service) ActivateJWTAuthority(ctx context.Context, req *localauthorityv1.ActivateJWTAuthorityRequest) (*localauthorityv1.ActivateJWTAuthorityResponse, error) {
	info, err := s.ca.ActivateJWTAuthority(ctx, req.AuthorityId)
	if err != nil {
		return nil, caErr(logWithID(ctx, req.AuthorityId), err)
	}
	st := state(info)
	st.UpstreamAuthoritySubjectKeyId = ""
	return &localauthorityv1.ActivateJWTAuthorityResponse{ActivatedAuthority: st}, nil
}

// TaintJWTAuthority marks the old JWT authority tainted in the bundle.
func (s *Service) TaintJWTAuthority(ctx context.Context, req *localauthorityv1.TaintJWTAuthorityRequest) (*localauthorityv1.TaintJWTAuthorityResponse, error) {
	info, err := s.ca.TaintJWTAuthority(ctx, req.AuthorityId)
	if err != nil {
		return nil, caErr(logWithID(ctx, req.AuthorityId), err)
	}
	return &localauthorityv1.TaintJWTAuthorityResponse{TaintedAuthority: &localauthorityv1.AuthorityState{AuthorityId: info.AuthorityID}}, nil
}

// RevokeJWTAuthority removes a tainted JWT authority from the bundle.
func (s *Service) RevokeJWTAuthority(ctx context.Context, req *localauthorityv1.RevokeJWTAuthorityRequest) (*localauthorityv1.RevokeJWTAuthorityResponse, error) {
	info, err := s.ca.RevokeJWTAuthority(ctx, req.AuthorityId)
	if err != nil {
		return nil, caErr(logWithID(ctx, req.AuthorityId), err)
	}
	return &localauthorityv1.RevokeJWTAuthorityResponse{RevokedAuthority: &localauthorityv1.AuthorityState{AuthorityId: info.AuthorityID}}, nil
}

// GetX509AuthorityState shows the active X.509 authority and the prepared
// or old one. Unavailable while the server is initializing.
func (s *Service) GetX509AuthorityState(ctx context.Context, _ *localauthorityv1.GetX509AuthorityStateRequest) (*localauthorityv1.GetX509AuthorityStateResponse, error) {
	slots := s.ca.X509Authorities()
	if slots.Active == nil {
		return nil, api.MakeErr(api.Logger(ctx), codes.Unavailable, "server is initializing", nil)
	}
	return &localauthorityv1.GetX509AuthorityStateResponse{
		Active: state(slots.Active), Prepared: state(slots.Prepared), Old: state(slots.Old),
	}, nil
}

// PrepareX509Authority prepares a new X.509 CA and publishes it.
func (s *Service) PrepareX509Authority(ctx context.Context, _ *localauthorityv1.PrepareX509AuthorityRequest) (*localauthorityv1.PrepareX509AuthorityResponse, error) {
	info, err := s.ca.PrepareX509Authority(ctx)
	if err != nil {
		return nil, caErr(api.Logger(ctx), err)
	}
	return &localauthorityv1.PrepareX509AuthorityResponse{PreparedAuthority: state(info)}, nil
}

// ActivateX509Authority makes the prepared X.509 CA active.
func (s *Service) ActivateX509Authority(ctx context.Context, req *localauthorityv1.ActivateX509AuthorityRequest) (*localauthorityv1.ActivateX509AuthorityResponse, error) {
	info, err := s.ca.ActivateX509Authority(ctx, req.AuthorityId)
	if err != nil {
		return nil, caErr(logWithID(ctx, req.AuthorityId), err)
	}
	return &localauthorityv1.ActivateX509AuthorityResponse{ActivatedAuthority: state(info)}, nil
}

// TaintX509Authority marks the old X.509 CA tainted in the bundle.
func (s *Service) TaintX509Authority(ctx context.Context, req *localauthorityv1.TaintX509AuthorityRequest) (*localauthorityv1.TaintX509AuthorityResponse, error) {
	info, err := s.ca.TaintX509Authority(ctx, req.AuthorityId)
	if err != nil {
		return nil, caErr(logWithID(ctx, req.AuthorityId), err)
	}
	return &localauthorityv1.TaintX509AuthorityResponse{TaintedAuthority: state(info)}, nil
}

// RevokeX509Authority removes the old, tainted X.509 CA from the bundle.
func (s *Service) RevokeX509Authority(ctx context.Context, req *localauthorityv1.RevokeX509AuthorityRequest) (*localauthorityv1.RevokeX509AuthorityResponse, error) {
	info, err := s.ca.RevokeX509Authority(ctx, req.AuthorityId)
	if err != nil {
		return nil, caErr(logWithID(ctx, req.AuthorityId), err)
	}
	return &localauthorityv1.RevokeX509AuthorityResponse{RevokedAuthority: &localauthorityv1.AuthorityState{AuthorityId: info.AuthorityID}}, nil
}

// TaintX509UpstreamAuthority marks tainted, in the bundle, the upstream
// root that signed the old X.509 CA (never the one signing the active CA).
// FailedPrecondition without an upstream authority.
func (s *Service) TaintX509UpstreamAuthority(ctx context.Context, req *localauthorityv1.TaintX509UpstreamAuthorityRequest) (*localauthorityv1.TaintX509UpstreamAuthorityResponse, error) {
	log := api.Logger(ctx)
	if req.SubjectKeyId != "" {
		log = log.With(slog.String(api.KeySubjectKey, req.SubjectKeyId))
	}
	if !s.ca.IsUpstreamAuthority() {
		return nil, api.MakeErr(log, codes.FailedPrecondition, "upstream authority is not configured", nil)
	}
	skid := strings.ToLower(req.SubjectKeyId)
	if err := s.checkUpstreamSKID(skid); err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "provided subject key id is not valid", err)
	}
	err := s.editUpstream(ctx, skid, func(b *datastore.Bundle, i int) error {
		if b.X509Authorities[i].Tainted {
			return api.Publicf("root CA is already tainted")
		}
		b.X509Authorities[i].Tainted = true
		return nil
	}, "no ca found with provided subject key ID")
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to taint upstream authority", err)
	}
	log.Info("X.509 upstream authority tainted successfully")
	return &localauthorityv1.TaintX509UpstreamAuthorityResponse{UpstreamAuthoritySubjectKeyId: skid}, nil
}

// RevokeX509UpstreamAuthority removes, from the bundle, the tainted
// upstream root that signed the old X.509 CA. FailedPrecondition without
// an upstream authority.
func (s *Service) RevokeX509UpstreamAuthority(ctx context.Context, req *localauthorityv1.RevokeX509UpstreamAuthorityRequest) (*localauthorityv1.RevokeX509UpstreamAuthorityResponse, error) {
	log := api.Logger(ctx)
	if req.SubjectKeyId != "" {
		log = log.With(slog.String(api.KeySubjectKey, req.SubjectKeyId))
	}
	if !s.ca.IsUpstreamAuthority() {
		return nil, api.MakeErr(log, codes.FailedPrecondition, "upstream authority is not configured", nil)
	}
	skid := strings.ToLower(req.SubjectKeyId)
	if err := s.checkUpstreamSKID(skid); err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "invalid subject key ID", err)
	}
	err := s.editUpstream(ctx, skid, func(b *datastore.Bundle, i int) error {
		if !b.X509Authorities[i].Tainted {
			return api.Publicf("it is not possible to revoke an untainted root CA")
		}
		b.X509Authorities = slices.Delete(b.X509Authorities, i, i+1)
		return nil
	}, "no root CA found with provided subject key ID")
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to revoke X.509 upstream authority", err)
	}
	log.Info("X.509 upstream authority successfully revoked")
	return &localauthorityv1.RevokeX509UpstreamAuthorityResponse{UpstreamAuthoritySubjectKeyId: skid}, nil
}

// checkUpstreamSKID accepts only the upstream authority of the old X.509 CA.
func (s *Service) checkUpstreamSKID(skid string) error {
	slots := s.ca.X509Authorities()
	switch {
	case skid == "":
		return api.Publicf("no subject key ID provided")
	case slots.Active != nil && skid == slots.Active.UpstreamAuthorityID:
		return api.Publicf("unable to use upstream authority singing current authority")
	case slots.Old == nil && slots.Prepared == nil,
		slots.Old == nil && skid != slots.Prepared.UpstreamAuthorityID,
		slots.Old != nil && skid != slots.Old.UpstreamAuthorityID:
		return api.Publicf("upstream authority didn't sign the old local authority")
	case slots.Old == nil:
		return api.Publicf("only upstream authorities signing an old authority can be used")
	}
	return nil
}

// editUpstream applies edit to the bundle root whose subject key ID is skid.
func (s *Service) editUpstream(ctx context.Context, skid string, edit func(*datastore.Bundle, int) error, missing string) error {
	_, err := s.store.UpdateBundleFunc(ctx, s.td.IDString(), func(b *datastore.Bundle) error {
		for i, a := range b.X509Authorities {
			if authorityID(a.Certificate) == skid {
				return edit(b, i)
			}
		}
		return api.Publicf("%s", missing)
	})
	return err
}

// authorityID is the authority ID (hex subject key ID) of a DER certificate.
func authorityID(der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	return ca.AuthorityIDFromSKID(c.SubjectKeyId)
}
