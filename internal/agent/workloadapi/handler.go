package workloadapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

const (
	workloadMethodPrefix = "/SpiffeWorkloadAPI/"
	securityHeader       = "workload.spiffe.io"
)

var (
	errBundleMissing   = errors.New("bundle not available")
	errNoIdentity      = status.Error(codes.PermissionDenied, "no identity issued")
	errSecurityHeader  = status.Error(codes.InvalidArgument, "security header missing from request")
	errMissingAudience = status.Error(codes.InvalidArgument, "audience must be specified")
)

// checkSecurityHeader enforces the Workload Endpoint's SSRF guard on every
// SpiffeWorkloadAPI method: exactly one "workload.spiffe.io" value, and it
// is "true" (case-sensitive).
func checkSecurityHeader(ctx context.Context, fullMethod string) error {
	if !strings.HasPrefix(fullMethod, workloadMethodPrefix) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(securityHeader); len(v) != 1 || v[0] != "true" {
		return errSecurityHeader
	}
	return nil
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkSecurityHeader(ctx, info.FullMethod); err != nil {
		s.callLogger(ctx, info.FullMethod).Warn("Security header missing from request")
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := checkSecurityHeader(ss.Context(), info.FullMethod); err != nil {
		s.callLogger(ss.Context(), info.FullMethod).Warn("Security header missing from request")
		return err
	}
	return handler(srv, ss)
}

// callLogger returns the logger of one call, with the method and the
// caller's PID and uid.
func (s *Server) callLogger(ctx context.Context, method string) *slog.Logger {
	log := s.log.With("method", method)
	if pi, ok := peerFromContext(ctx); ok {
		log = log.With("pid", pi.caller.PID, telemetry.CallerUID, pi.caller.UID)
	}
	return log
}

// attest returns the selectors of the caller, after checking that the
// process attested is still the one that connected (PID reuse, T6). A
// caller that cannot be attested is logged at warn and counted.
func (s *Server) attest(ctx context.Context, log *slog.Logger) ([]string, error) {
	pi, ok := peerFromContext(ctx)
	if !ok {
		log.Error("Peer tracker watcher missing from context")
		s.cfg.Metrics.WorkloadAttestationFailed(s.cfg.AttestorName, telemetry.ReasonPeer)
		return nil, status.Error(codes.Internal, "peer tracker watcher missing from context")
	}
	selectors, err := s.cfg.Attestor.Attest(ctx, pi.caller.PID)
	if err != nil {
		log.Warn("Workload attestation failed", telemetry.Reason, telemetry.ReasonLocal, "error", err)
		s.cfg.Metrics.WorkloadAttestationFailed(s.cfg.AttestorName, telemetry.ReasonLocal)
		return nil, status.Error(codes.Internal, "workload attestation failed")
	}
	if err := pi.watcher.IsAlive(); err != nil {
		log.Warn("Workload attestation failed: caller changed during attestation", telemetry.Reason, telemetry.ReasonPeer, "error", err)
		s.cfg.Metrics.WorkloadAttestationFailed(s.cfg.AttestorName, telemetry.ReasonPeer)
		return nil, status.Errorf(codes.Unauthenticated, "could not verify existence of the original caller: %v", err)
	}
	return selectors, nil
}

// noIdentity logs and counts a caller that was attested but matches no
// entry, and returns SPIRE's PermissionDenied "no identity issued".
func (s *Server) noIdentity(log *slog.Logger) error {
	log.Warn("Workload attestation failed: no identity issued", telemetry.Reason, telemetry.ReasonNoIdentity)
	s.cfg.Metrics.WorkloadAttestationFailed(s.cfg.AttestorName, telemetry.ReasonNoIdentity)
	return errNoIdentity
}

// workloadService implements the SpiffeWorkloadAPI service. WIT-SVID RPCs
// are not supported and return Unimplemented (WA-14).
type workloadService struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	s *Server
}

// FetchX509SVID streams the caller's X509-SVIDs: the first message as soon
// as the caller is attested, then the full state after every change; it
// ends with PermissionDenied when the caller has no identity.
func (w *workloadService) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	log := w.s.callLogger(ctx, "FetchX509SVID")
	selectors, err := w.s.attest(ctx, log)
	if err != nil {
		return err
	}
	sub := w.s.cfg.Cache.Subscribe(selectors)
	defer sub.Close()
	for {
		select {
		case <-sub.Updates():
			u := sub.Latest()
			ids := uniqueHints(u.Identities, log)
			if len(ids) == 0 {
				return w.s.noIdentity(log)
			}
			resp, err := x509SVIDResponse(u, ids)
			if err != nil {
				log.Error("Could not serialize X.509 SVID response", "error", err)
				return status.Errorf(codes.Unavailable, "could not serialize response: %v", err)
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			log.Debug("Sent X.509 SVID response", "count", len(resp.Svids))
		case <-ctx.Done():
			return nil
		}
	}
}

// FetchX509Bundles streams the X.509 bundles the caller may use: the own
// trust domain's and those its identities federate with.
func (w *workloadService) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	ctx := stream.Context()
	log := w.s.callLogger(ctx, "FetchX509Bundles")
	selectors, err := w.s.attest(ctx, log)
	if err != nil {
		return err
	}
	sub := w.s.cfg.Cache.Subscribe(selectors)
	defer sub.Close()
	var prev *workload.X509BundlesResponse
	for {
		select {
		case <-sub.Updates():
			u := sub.Latest()
			if !u.HasIdentity() {
				return w.s.noIdentity(log)
			}
			if u.Bundle == nil {
				return status.Error(codes.Unavailable, "could not serialize response: bundle not available")
			}
			resp := &workload.X509BundlesResponse{Bundles: map[string][]byte{u.Bundle.TrustDomain().IDString(): x509DER(u.Bundle)}}
			for td, b := range u.FederatedBundles {
				resp.Bundles[td.IDString()] = x509DER(b)
			}
			if proto.Equal(resp, prev) {
				continue
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			prev = resp
		case <-ctx.Done():
			return nil
		}
	}
}

// FetchJWTSVID returns JWT-SVIDs for the caller's identities (or the one
// requested) and audience.
func (w *workloadService) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	log := w.s.callLogger(ctx, "FetchJWTSVID")
	if len(req.Audience) == 0 {
		log.Error("Missing required audience parameter")
		return nil, errMissingAudience
	}
	if req.SpiffeId != "" {
		if _, err := spiffeid.FromString(req.SpiffeId); err != nil {
			log.Error("Invalid requested SPIFFE ID", "error", err)
			return nil, status.Errorf(codes.InvalidArgument, "invalid requested SPIFFE ID: %v", err)
		}
	}
	selectors, err := w.s.attest(ctx, log)
	if err != nil {
		return nil, err
	}
	resp := new(workload.JWTSVIDResponse)
	for _, e := range uniqueEntryHints(w.s.cfg.Cache.MatchingEntries(selectors), log) {
		if req.SpiffeId != "" && e.SPIFFEID.String() != req.SpiffeId {
			continue
		}
		svid, err := w.s.cfg.Cache.FetchJWTSVID(ctx, e, req.Audience)
		if err != nil {
			log.Error("Could not fetch JWT-SVID", "spiffe_id", e.SPIFFEID.String(), "error", err)
			return nil, status.Errorf(codes.Unavailable, "could not fetch JWT-SVID: %v", err)
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: e.SPIFFEID.String(), Svid: svid.Token, Hint: e.Hint})
	}
	if len(resp.Svids) == 0 {
		return nil, w.s.noIdentity(log)
	}
	return resp, nil
}

// FetchJWTBundles streams the JWT bundles (JWKS with only JWT-SVID keys)
// the caller may use.
func (w *workloadService) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	ctx := stream.Context()
	log := w.s.callLogger(ctx, "FetchJWTBundles")
	selectors, err := w.s.attest(ctx, log)
	if err != nil {
		return err
	}
	sub := w.s.cfg.Cache.Subscribe(selectors)
	defer sub.Close()
	var prev *workload.JWTBundlesResponse
	for {
		select {
		case <-sub.Updates():
			u := sub.Latest()
			if !u.HasIdentity() {
				return w.s.noIdentity(log)
			}
			if u.Bundle == nil {
				return status.Error(codes.Unavailable, "could not serialize response: bundle not available")
			}
			resp := &workload.JWTBundlesResponse{Bundles: make(map[string][]byte)}
			for _, b := range append([]*spiffebundle.Bundle{u.Bundle}, slices.Collect(maps.Values(u.FederatedBundles))...) {
				jwks, err := jwtJWKS(b)
				if err != nil {
					log.Error("Could not serialize JWT bundle response", "error", err)
					return status.Errorf(codes.Unavailable, "could not serialize response: %v", err)
				}
				resp.Bundles[b.TrustDomain().IDString()] = jwks
			}
			if proto.Equal(resp, prev) {
				continue
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			prev = resp
		case <-ctx.Done():
			return nil
		}
	}
}

// ValidateJWTSVID validates a JWT-SVID against the bundle of its subject's
// trust domain, among the bundles the caller may use, and returns its
// claims.
func (w *workloadService) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	log := w.s.callLogger(ctx, "ValidateJWTSVID")
	if req.Audience == "" {
		log.Error("Missing required audience parameter")
		return nil, errMissingAudience
	}
	if req.Svid == "" {
		log.Error("Missing required svid parameter")
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	selectors, err := w.s.attest(ctx, log)
	if err != nil {
		return nil, err
	}
	u := w.s.cfg.Cache.Snapshot(selectors)
	bundleFor := func(td spiffeid.TrustDomain) *spiffebundle.Bundle {
		if u.Bundle != nil && u.Bundle.TrustDomain() == td {
			return u.Bundle
		}
		return u.FederatedBundles[td]
	}
	id, claims, err := validateJWTSVID(req.Svid, req.Audience, bundleFor, w.s.cfg.Clock())
	if err != nil {
		// The token is not logged (T15).
		log.Warn("Failed to validate JWT", "audience", req.Audience, "error", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !id.MemberOf(w.s.cfg.TrustDomain) {
		for claim := range claims {
			switch claim {
			case "sub", "exp", "aud":
			default:
				if _, ok := w.s.foreign[claim]; !ok {
					delete(claims, claim)
				}
			}
		}
	}
	// aud is always a list, as SPIRE returns it.
	if aud, ok := claims["aud"].(string); ok {
		claims["aud"] = []string{aud}
	}
	st, err := structFromClaims(claims)
	if err != nil {
		log.Error("Error deserializing claims from JWT-SVID", "error", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	log.Debug("Successfully validated JWT", "spiffe_id", id.String())
	return &workload.ValidateJWTSVIDResponse{SpiffeId: id.String(), Claims: st}, nil
}

func structFromClaims(claims map[string]any) (*structpb.Struct, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, err
	}
	st := new(structpb.Struct)
	if err := protojson.Unmarshal(b, st); err != nil {
		return nil, err
	}
	return st, nil
}

func x509SVIDResponse(u *cache.Update, ids []cache.Identity) (*workload.X509SVIDResponse, error) {
	if u.Bundle == nil {
		return nil, errBundleMissing
	}
	bundle := x509DER(u.Bundle)
	resp := &workload.X509SVIDResponse{
		Svids:            make([]*workload.X509SVID, 0, len(ids)),
		FederatedBundles: make(map[string][]byte, len(u.FederatedBundles)),
	}
	for td, b := range u.FederatedBundles {
		resp.FederatedBundles[td.IDString()] = x509DER(b)
	}
	for _, id := range ids {
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId:    id.Entry.SPIFFEID.String(),
			X509Svid:    id.SVID.ChainDER(),
			X509SvidKey: id.SVID.PrivateKeyDER(),
			Bundle:      bundle,
			Hint:        id.Entry.Hint,
		})
	}
	return resp, nil
}

// x509DER concatenates the DER of the bundle's X.509 authorities.
func x509DER(b *spiffebundle.Bundle) []byte {
	var out []byte
	for _, c := range b.X509Authorities() {
		out = append(out, c.Raw...)
	}
	if out == nil {
		out = []byte{}
	}
	return out
}

// jwtJWKS encodes the bundle's JWT authorities as a standard JWKS, keys
// ordered by key ID, indented as SPIRE prints it (spire-agent api fetch jwt
// prints these bytes). X.509 authorities are left out (WA-11).
func jwtJWKS(b *spiffebundle.Bundle) ([]byte, error) {
	auths := b.JWTAuthorities()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(auths))}
	for _, kid := range slices.Sorted(maps.Keys(auths)) {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: auths[kid], KeyID: kid})
	}
	return json.MarshalIndent(set, "", "    ")
}

// uniqueHints drops identities whose non-empty hint was already taken by
// an older entry (earlier CreatedAt, then smaller entry ID), as SPIRE does
// (WA-08). Order is kept.
func uniqueHints(ids []cache.Identity, log *slog.Logger) []cache.Identity {
	entries := make([]*cache.Entry, len(ids))
	for i, id := range ids {
		entries[i] = id.Entry
	}
	drop := duplicateHints(entries, log)
	if len(drop) == 0 {
		return ids
	}
	out := make([]cache.Identity, 0, len(ids))
	for _, id := range ids {
		if _, ok := drop[id.Entry]; !ok {
			out = append(out, id)
		}
	}
	return out
}

func uniqueEntryHints(entries []*cache.Entry, log *slog.Logger) []*cache.Entry {
	drop := duplicateHints(entries, log)
	if len(drop) == 0 {
		return entries
	}
	out := make([]*cache.Entry, 0, len(entries))
	for _, e := range entries {
		if _, ok := drop[e]; !ok {
			out = append(out, e)
		}
	}
	return out
}

func duplicateHints(entries []*cache.Entry, log *slog.Logger) map[*cache.Entry]struct{} {
	var drop map[*cache.Entry]struct{}
	keep := make(map[string]*cache.Entry)
	for _, e := range entries {
		if e.Hint == "" {
			continue
		}
		other, ok := keep[e.Hint]
		if !ok {
			keep[e.Hint] = e
			continue
		}
		winner, loser := other, e
		if c := cmp.Compare(e.CreatedAt, other.CreatedAt); c < 0 || (c == 0 && e.ID < other.ID) {
			winner, loser = e, other
		}
		keep[e.Hint] = winner
		if drop == nil {
			drop = make(map[*cache.Entry]struct{})
		}
		drop[loser] = struct{}{}
		log.Warn("Ignoring entry with duplicate hint", "hint", loser.Hint, "entry_id", loser.ID)
	}
	return drop
}

// healthService answers grpc.health.v1 Check on the Workload API socket,
// which `spire-agent healthcheck -socketPath` calls: SERVING once the agent
// has its trust bundle.
type healthService struct {
	grpc_health_v1.UnimplementedHealthServer
	cache Cache
	check func(context.Context) error // nil: the bundle is enough
}

func (h *healthService) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	if req.Service != "" {
		return nil, status.Error(codes.InvalidArgument, "per-service health is not supported")
	}
	ok := h.cache.Snapshot(nil).Bundle != nil
	if h.check != nil {
		ok = h.check(ctx) == nil
	}
	st := grpc_health_v1.HealthCheckResponse_NOT_SERVING
	if ok {
		st = grpc_health_v1.HealthCheckResponse_SERVING
	}
	return &grpc_health_v1.HealthCheckResponse{Status: st}, nil
}
