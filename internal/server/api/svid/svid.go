// Package svid implements the spire.api.server.svid.v1 SVID service. The
// admin RPCs MintX509SVID and MintJWTSVID sign SVIDs for any workload ID of
// the trust domain with the server CA. The SPIFFE ID of a minted X509-SVID
// comes only from the CSR's single URI SAN, after validation against the
// trust domain; its DNS names and subject are validated too, and nothing
// else from the CSR reaches the certificate (CONFORMANCE T1). The agent RPCs
// (BatchNewX509SVID, NewJWTSVID) sign SVIDs for the registration entries
// the calling agent is authorized for, with every field taken from the
// entry and only the public key from the CSR (T1, T2).
// NewDownstreamX509CA is Unimplemented.
package svid

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// CA is the part of the server CA the service uses; *ca.CA satisfies it.
type CA interface {
	SignX509SVID(ctx context.Context, p ca.X509SVIDParams) ([]*x509.Certificate, error)
	SignJWTSVID(ctx context.Context, p ca.JWTSVIDParams) (string, error)
}

// Entries answers which registration entries an agent is authorized for;
// *index.Index satisfies it.
type Entries interface {
	AuthorizedEntries(agentID string) []*datastore.Entry
}

// Config configures a Service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	CA          CA
	// Entries, when set, serves the agent RPCs BatchNewX509SVID and
	// NewJWTSVID; they are Unimplemented without it.
	Entries Entries
}

// Service serves the SVID API. It is safe for concurrent use.
type Service struct {
	svidv1.UnsafeSVIDServer

	td      spiffeid.TrustDomain
	ca      CA
	entries Entries
}

// New returns the SVID service.
func New(c Config) (*Service, error) {
	if c.TrustDomain.IsZero() {
		return nil, errors.New("svid: trust domain is required")
	}
	if c.CA == nil {
		return nil, errors.New("svid: CA is required")
	}
	return &Service{td: c.TrustDomain, ca: c.CA, entries: c.Entries}, nil
}

// Register registers the service on r.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	svidv1.RegisterSVIDServer(r, s)
}

// MintX509SVID signs an X509-SVID for the public key of a CSR. The CSR must
// be self-signed and carry exactly one URI SAN, a workload ID of the trust
// domain; its DNS names must be valid and must not overlap a wildcard. A TTL
// of 0 or less means the server default; the lifetime is capped at the CA's.
func (s *Service) MintX509SVID(ctx context.Context, req *svidv1.MintX509SVIDRequest) (*svidv1.MintX509SVIDResponse, error) {
	log := api.Logger(ctx).With(slog.String(api.KeyCSR, api.HashBytes(req.Csr)), slog.Int(api.KeyTTL, int(req.Ttl)))
	if len(req.Csr) == 0 {
		return nil, api.MakeErr(log, codes.InvalidArgument, "missing CSR", nil)
	}
	csr, err := x509.ParseCertificateRequest(req.Csr)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "malformed CSR", api.Publicf("%v", err))
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "failed to verify CSR signature", api.Publicf("%v", err))
	}
	switch {
	case len(csr.URIs) == 0:
		return nil, api.MakeErr(log, codes.InvalidArgument, "CSR URI SAN is required", nil)
	case len(csr.URIs) > 1:
		return nil, api.MakeErr(log, codes.InvalidArgument, "only one URI SAN is expected", nil)
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "CSR URI SAN is invalid", api.Publicf("%v", err))
	}
	if err := api.VerifyWorkloadID(s.td, id); err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "CSR URI SAN is invalid", err)
	}
	dnsNames := make([]string, 0, len(csr.DNSNames))
	for _, n := range csr.DNSNames {
		if err := api.ValidateDNSName(n); err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "CSR DNS name is invalid", err)
		}
		dnsNames = append(dnsNames, n)
	}
	if err := api.CheckWildcardOverlap(dnsNames); err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "CSR DNS name contains a wildcard that covers another non-wildcard name", err)
	}
	chain, err := s.ca.SignX509SVID(ctx, ca.X509SVIDParams{
		SPIFFEID:  id,
		PublicKey: csr.PublicKey,
		TTL:       time.Duration(req.Ttl) * time.Second,
		DNSNames:  dnsNames,
		Subject:   csr.Subject,
	})
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to sign X509-SVID", publicCAError(err))
	}
	log.Debug("Signed X509 SVID",
		slog.String(api.KeySPIFFEID, id.String()),
		slog.String(api.KeyExpiresAt, chain[0].NotAfter.Format(time.RFC3339)),
		slog.String(api.KeySerial, chain[0].SerialNumber.String()))
	raw := make([][]byte, 0, len(chain))
	for _, c := range chain {
		raw = append(raw, c.Raw)
	}
	return &svidv1.MintX509SVIDResponse{Svid: &types.X509SVID{
		Id:        api.ProtoFromID(id),
		CertChain: raw,
		ExpiresAt: chain[0].NotAfter.Unix(),
	}}, nil
}

// MintJWTSVID signs a JWT-SVID for a workload ID of the trust domain and at
// least one audience. A TTL of 0 or less means the server default.
func (s *Service) MintJWTSVID(ctx context.Context, req *svidv1.MintJWTSVIDRequest) (*svidv1.MintJWTSVIDResponse, error) {
	log := api.Logger(ctx)
	id, err := api.WorkloadIDFromProto(s.td, req.Id)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "invalid SPIFFE ID", err)
	}
	log = log.With(slog.String(api.KeySPIFFEID, id.String()))
	svid, err := s.mintJWT(ctx, log, id, req.Audience, req.Ttl)
	if err != nil {
		return nil, err
	}
	return &svidv1.MintJWTSVIDResponse{Svid: svid}, nil
}

// mintJWT signs a JWT-SVID for id.
func (s *Service) mintJWT(ctx context.Context, log *slog.Logger, id spiffeid.ID, audience []string, ttl int32) (*types.JWTSVID, error) {
	if len(audience) == 0 {
		return nil, api.MakeErr(log, codes.InvalidArgument, "at least one audience is required", nil)
	}
	token, err := s.ca.SignJWTSVID(ctx, ca.JWTSVIDParams{
		SPIFFEID: id,
		Audience: audience,
		TTL:      time.Duration(ttl) * time.Second,
	})
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to sign JWT-SVID", publicCAError(err))
	}
	iat, exp, err := tokenTimes(token)
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to get JWT-SVID expiry", err)
	}
	log.Debug("Server CA successfully signed JWT SVID", slog.String(api.KeyExpiresAt, exp.Format(time.RFC3339)))
	return &types.JWTSVID{
		Token:     token,
		Id:        api.ProtoFromID(id),
		ExpiresAt: exp.Unix(),
		IssuedAt:  iat.Unix(),
	}, nil
}

// publicCAError marks the CA's refusals (bad parameters, no active
// authority) as public; other errors stay hidden from clients.
func publicCAError(err error) error {
	if errors.Is(err, ca.ErrInvalidParams) || errors.Is(err, ca.ErrNoActiveAuthority) {
		return &api.PublicError{Msg: strings.ReplaceAll(err.Error(), "ca: ", ""), Err: err}
	}
	return err
}

// tokenTimes reads iat and exp of a token this server just signed.
func tokenTimes(token string) (iat, exp time.Time, err error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{
		jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	})
	if err != nil {
		return iat, exp, err
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return iat, exp, err
	}
	if c.Expiry == nil || c.IssuedAt == nil {
		return iat, exp, errors.New("svid: token has no exp or iat claim")
	}
	return c.IssuedAt.Time(), c.Expiry.Time(), nil
}

// NewDownstreamX509CA signs a downstream server's CA. Nested SPIRE
// topologies are not supported: it is Unimplemented.
func (s *Service) NewDownstreamX509CA(context.Context, *svidv1.NewDownstreamX509CARequest) (*svidv1.NewDownstreamX509CAResponse, error) {
	return nil, status.Error(codes.Unimplemented, "method NewDownstreamX509CA not implemented")
}
