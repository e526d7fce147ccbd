package servertest

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

type agentService struct {
	agentv1.UnimplementedAgentServer
	s *Server
}

func (a agentService) AttestAgent(stream agentv1.Agent_AttestAgentServer) error {
	s := a.s
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	params := req.GetParams()
	if params == nil || params.GetData() == nil {
		return status.Error(codes.InvalidArgument, "missing attestation data")
	}
	csr, err := x509.ParseCertificateRequest(params.GetParams().GetCsr())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "invalid CSR: %v", err)
	}
	payload := string(params.GetData().GetPayload())
	var id spiffeid.ID
	var reattestable bool
	s.mu.Lock()
	switch params.GetData().GetType() {
	case "join_token":
		if _, ok := s.tokens[payload]; !ok {
			s.mu.Unlock()
			return status.Error(codes.PermissionDenied, "failed to attest: join token does not exist or has already been used")
		}
		delete(s.tokens, payload)
		id, err = spiffeid.FromPath(s.TD, "/spire/agent/join_token/"+payload)
	case ReattestType:
		if _, ok := s.nodes[payload]; !ok {
			s.mu.Unlock()
			return status.Error(codes.PermissionDenied, "failed to attest: unknown node")
		}
		id, err = spiffeid.FromPath(s.TD, "/spire/agent/test/"+payload)
		reattestable = true
	default:
		s.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "could not find node attestor type %q", params.GetData().GetType())
	}
	if rec, ok := s.agents[id]; ok && rec.banned {
		s.mu.Unlock()
		return status.Error(codes.PermissionDenied, "failed to attest: agent is banned")
	}
	s.mu.Unlock()
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	chain, err := s.sign(id, csr.PublicKey, s.opts.AgentTTL)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	s.mu.Lock()
	s.agents[id] = &agentRecord{serial: chain[0].SerialNumber, reattestable: reattestable}
	s.mu.Unlock()
	return stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result_{
		Result: &agentv1.AttestAgentResponse_Result{Svid: x509SVIDProto(id, chain), Reattestable: reattestable},
	}})
}

func (a agentService) RenewAgent(ctx context.Context, req *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	s := a.s
	id := callerID(ctx)
	s.mu.Lock()
	rec := s.agents[id]
	reattestable := rec != nil && rec.reattestable
	s.mu.Unlock()
	if reattestable {
		return nil, permissionDenied(types.PermissionDeniedDetails_AGENT_MUST_REATTEST, "agent must reattest instead of renew")
	}
	csr, err := x509.ParseCertificateRequest(req.GetParams().GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid CSR: %v", err)
	}
	chain, err := s.sign(id, csr.PublicKey, s.opts.AgentTTL)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.mu.Lock()
	if rec := s.agents[id]; rec != nil {
		rec.newSerial = chain[0].SerialNumber
	}
	s.mu.Unlock()
	return &agentv1.RenewAgentResponse{Svid: x509SVIDProto(id, chain)}, nil
}

type bundleService struct {
	bundlev1.UnimplementedBundleServer
	s *Server
}

func (b bundleService) GetBundle(context.Context, *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	s := b.s
	pub, err := x509.MarshalPKIXPublicKey(s.jwtKey.Public())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.mu.Lock()
	var authorities []*types.X509Certificate
	for _, ca := range s.tainted {
		authorities = append(authorities, &types.X509Certificate{Asn1: ca.Root.Raw, Tainted: true})
	}
	authorities = append(authorities, &types.X509Certificate{Asn1: s.active.Root.Raw})
	s.mu.Unlock()
	return &types.Bundle{
		TrustDomain:     s.TD.Name(),
		X509Authorities: authorities,
		JwtAuthorities:  []*types.JWTKey{{PublicKey: pub, KeyId: "jwt-key", ExpiresAt: time.Now().Add(24 * time.Hour).Unix()}},
		SequenceNumber:  1,
	}, nil
}

func (b bundleService) GetFederatedBundle(_ context.Context, req *bundlev1.GetFederatedBundleRequest) (*types.Bundle, error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	fb, ok := s.federated[req.GetTrustDomain()]
	if !ok {
		return nil, status.Error(codes.NotFound, "bundle not found")
	}
	return proto.Clone(fb).(*types.Bundle), nil
}

type entryService struct {
	entryv1.UnimplementedEntryServer
	s *Server
}

// sortedEntries returns copies of the entries ordered by ID.
func (s *Server) sortedEntries() []*types.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*types.Entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, proto.Clone(e).(*types.Entry))
	}
	slices.SortFunc(out, func(a, b *types.Entry) int { return cmp.Compare(a.Id, b.Id) })
	return out
}

func (e entryService) GetAuthorizedEntries(context.Context, *entryv1.GetAuthorizedEntriesRequest) (*entryv1.GetAuthorizedEntriesResponse, error) {
	return &entryv1.GetAuthorizedEntriesResponse{Entries: e.s.sortedEntries()}, nil
}

// SyncAuthorizedEntries follows SPIRE 1.13's server: the whole set when it
// fits a page, else revisions then the entries asked for.
func (e entryService) SyncAuthorizedEntries(stream entryv1.Entry_SyncAuthorizedEntriesServer) error {
	entries := e.s.sortedEntries()
	pageSize := e.s.opts.EntryPageSize
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	if len(req.GetIds()) > 0 {
		return status.Error(codes.InvalidArgument, "specifying IDs on initial request is not supported")
	}
	if req.GetOutputMask() != nil && !req.GetOutputMask().GetRevisionNumber() {
		return status.Error(codes.InvalidArgument, "revision number cannot be masked")
	}
	if len(entries) <= pageSize {
		return stream.Send(&entryv1.SyncAuthorizedEntriesResponse{Entries: entries})
	}
	for i := 0; i < len(entries); i += pageSize {
		end := min(i+pageSize, len(entries))
		resp := &entryv1.SyncAuthorizedEntriesResponse{More: end < len(entries)}
		for _, en := range entries[i:end] {
			resp.EntryRevisions = append(resp.EntryRevisions, &entryv1.EntryRevision{Id: en.Id, RevisionNumber: en.RevisionNumber, CreatedAt: en.CreatedAt})
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	byID := make(map[string]*types.Entry, len(entries))
	for _, en := range entries {
		byID[en.Id] = en
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return nil
			}
			return nil // io.EOF: the agent is done
		}
		var found []*types.Entry
		for _, id := range req.GetIds() {
			if en, ok := byID[id]; ok {
				found = append(found, en)
			}
		}
		for i := 0; ; i += pageSize {
			end := min(i+pageSize, len(found))
			if err := stream.Send(&entryv1.SyncAuthorizedEntriesResponse{Entries: found[i:end], More: end < len(found)}); err != nil {
				return err
			}
			if end >= len(found) {
				break
			}
		}
	}
}

type svidService struct {
	svidv1.UnimplementedSVIDServer
	s *Server
}

func (v svidService) BatchNewX509SVID(_ context.Context, req *svidv1.BatchNewX509SVIDRequest) (*svidv1.BatchNewX509SVIDResponse, error) {
	s := v.s
	if len(req.GetParams()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "missing parameters")
	}
	s.mu.Lock()
	s.batches = append(s.batches, slices.Clone(req.GetParams()))
	s.mu.Unlock()
	resp := &svidv1.BatchNewX509SVIDResponse{}
	for _, p := range req.GetParams() {
		resp.Results = append(resp.Results, v.sign(p))
	}
	return resp, nil
}

func (v svidService) sign(p *svidv1.NewX509SVIDParams) *svidv1.BatchNewX509SVIDResponse_Result {
	s := v.s
	fail := func(code codes.Code, msg string) *svidv1.BatchNewX509SVIDResponse_Result {
		return &svidv1.BatchNewX509SVIDResponse_Result{Status: &types.Status{Code: int32(code), Message: msg}}
	}
	s.mu.Lock()
	en, ok := s.entries[p.GetEntryId()]
	s.mu.Unlock()
	if !ok {
		return fail(codes.NotFound, "entry not found or not authorized")
	}
	if len(p.GetCsr()) == 0 {
		return fail(codes.InvalidArgument, errNoCSR.Error())
	}
	csr, err := x509.ParseCertificateRequest(p.GetCsr())
	if err != nil {
		return fail(codes.InvalidArgument, "malformed CSR")
	}
	td, err := spiffeid.TrustDomainFromString(en.GetSpiffeId().GetTrustDomain())
	if err != nil {
		return fail(codes.Internal, err.Error())
	}
	id, err := spiffeid.FromPath(td, en.GetSpiffeId().GetPath())
	if err != nil {
		return fail(codes.Internal, err.Error())
	}
	ttl := s.opts.SVIDTTL
	if en.GetX509SvidTtl() > 0 {
		ttl = time.Duration(en.GetX509SvidTtl()) * time.Second
	}
	chain, err := s.sign(id, csr.PublicKey, ttl, en.GetDnsNames()...)
	if err != nil {
		return fail(codes.Internal, err.Error())
	}
	return &svidv1.BatchNewX509SVIDResponse_Result{Svid: x509SVIDProto(id, chain), Status: &types.Status{}}
}

func (v svidService) NewJWTSVID(_ context.Context, req *svidv1.NewJWTSVIDRequest) (*svidv1.NewJWTSVIDResponse, error) {
	s := v.s
	s.mu.Lock()
	en, ok := s.entries[req.GetEntryId()]
	s.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.NotFound, "entry not found or not authorized")
	}
	if len(req.GetAudience()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "at least one audience is required")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.jwtKey, KeyID: "jwt-key"}}, new(jose.SignerOptions).WithType("JWT"))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	now := time.Now()
	exp := now.Add(s.opts.JWTTTL)
	sub := fmt.Sprintf("spiffe://%s%s", en.GetSpiffeId().GetTrustDomain(), en.GetSpiffeId().GetPath())
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  sub,
		Audience: req.GetAudience(),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(exp),
	}).Serialize()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &svidv1.NewJWTSVIDResponse{Svid: &types.JWTSVID{
		Token:     token,
		Id:        en.GetSpiffeId(),
		IssuedAt:  now.Unix(),
		ExpiresAt: exp.Unix(),
	}}, nil
}

type pushService struct{ s *Server }

// Watch sends the current revision, then every new one, until the stream
// ends or the agent is banned or evicted.
func (p pushService) Watch(ctx context.Context, send func(int64) error) error {
	s := p.s
	w := &watcher{agent: callerID(ctx), revs: make(chan int64, 1), kill: make(chan error, 1)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	rev := s.revision
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	if err := send(rev); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.kill:
			return err
		case rev := <-w.revs:
			if err := send(rev); err != nil {
				return err
			}
		}
	}
}
