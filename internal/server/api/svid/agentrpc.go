package svid

import (
	"context"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// authorized returns the entries the calling agent may sign for, by ID.
func (s *Service) authorized(ctx context.Context, log *slog.Logger) (map[string]*datastore.Entry, error) {
	caller, ok := api.CallerFrom(ctx)
	if !ok || caller.ID.IsZero() {
		return nil, api.MakeErr(log, codes.Internal, "caller ID missing from request context", nil)
	}
	es := s.entries.AuthorizedEntries(caller.ID.String())
	out := make(map[string]*datastore.Entry, len(es))
	for _, e := range es {
		out[e.ID] = e
	}
	return out, nil
}

// BatchNewX509SVID signs X509-SVIDs for entries the calling agent is
// authorized for, with a status per request. The SPIFFE ID, DNS names and
// TTL come from the entry; the CSR gives only the public key and must be
// self-signed. An entry the agent may not see is NotFound "entry not found
// or not authorized" (T2).
func (s *Service) BatchNewX509SVID(ctx context.Context, req *svidv1.BatchNewX509SVIDRequest) (*svidv1.BatchNewX509SVIDResponse, error) {
	log := api.Logger(ctx)
	if s.entries == nil {
		return nil, status.Error(codes.Unimplemented, "method BatchNewX509SVID not implemented")
	}
	if len(req.Params) == 0 {
		return nil, api.MakeErr(log, codes.InvalidArgument, "missing parameters", nil)
	}
	entries, err := s.authorized(ctx, log)
	if err != nil {
		return nil, err
	}
	results := make([]*svidv1.BatchNewX509SVIDResponse_Result, 0, len(req.Params))
	for _, p := range req.Params {
		results = append(results, s.newX509SVID(ctx, log, p, entries))
	}
	return &svidv1.BatchNewX509SVIDResponse{Results: results}, nil
}

func (s *Service) newX509SVID(ctx context.Context, log *slog.Logger, p *svidv1.NewX509SVIDParams, entries map[string]*datastore.Entry) *svidv1.BatchNewX509SVIDResponse_Result {
	fail := func(code codes.Code, msg string, err error) *svidv1.BatchNewX509SVIDResponse_Result {
		return &svidv1.BatchNewX509SVIDResponse_Result{Status: api.MakeStatus(log, code, msg, err)}
	}
	switch {
	case p.GetEntryId() == "":
		return fail(codes.InvalidArgument, "missing entry ID", nil)
	case len(p.GetCsr()) == 0:
		return fail(codes.InvalidArgument, "missing CSR", nil)
	}
	log = log.With(slog.String(api.KeyEntryID, p.EntryId))
	e, ok := entries[p.EntryId]
	if !ok {
		return fail(codes.NotFound, "entry not found or not authorized", nil)
	}
	csr, err := x509.ParseCertificateRequest(p.Csr)
	if err != nil {
		return fail(codes.InvalidArgument, "malformed CSR", api.Publicf("%v", err))
	}
	if err := csr.CheckSignature(); err != nil {
		return fail(codes.InvalidArgument, "invalid CSR signature", api.Publicf("%v", err))
	}
	id, err := spiffeid.FromString(e.SPIFFEID)
	if err != nil {
		return fail(codes.Internal, "entry has malformed SPIFFE ID", err)
	}
	chain, err := s.ca.SignX509SVID(ctx, ca.X509SVIDParams{
		SPIFFEID:  id,
		PublicKey: csr.PublicKey,
		DNSNames:  e.DNSNames,
		TTL:       time.Duration(e.X509SVIDTTL) * time.Second,
	})
	if err != nil {
		return fail(codes.Internal, "failed to sign X509-SVID", publicCAError(err))
	}
	raw := make([][]byte, 0, len(chain))
	for _, c := range chain {
		raw = append(raw, c.Raw)
	}
	return &svidv1.BatchNewX509SVIDResponse_Result{
		Svid:   &types.X509SVID{Id: api.ProtoFromID(id), CertChain: raw, ExpiresAt: chain[0].NotAfter.Unix()},
		Status: api.OK(),
	}
}

// NewJWTSVID signs a JWT-SVID for an entry the calling agent is authorized
// for, with the entry's SPIFFE ID and JWT-SVID TTL.
func (s *Service) NewJWTSVID(ctx context.Context, req *svidv1.NewJWTSVIDRequest) (*svidv1.NewJWTSVIDResponse, error) {
	log := api.Logger(ctx)
	if s.entries == nil {
		return nil, status.Error(codes.Unimplemented, "method NewJWTSVID not implemented")
	}
	entries, err := s.authorized(ctx, log)
	if err != nil {
		return nil, err
	}
	log = log.With(slog.String(api.KeyEntryID, req.EntryId))
	e, ok := entries[req.EntryId]
	if !ok {
		return nil, api.MakeErr(log, codes.NotFound, "entry not found or not authorized", nil)
	}
	id, err := spiffeid.FromString(e.SPIFFEID)
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "entry has malformed SPIFFE ID", err)
	}
	svid, err := s.mintJWT(ctx, log, id, req.Audience, e.JWTSVIDTTL)
	if err != nil {
		return nil, err
	}
	return &svidv1.NewJWTSVIDResponse{Svid: svid}, nil
}
