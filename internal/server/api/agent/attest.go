package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/nodeattest"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// AttestAgent attests a node with the attestor its payload names and
// issues its agent SVID, with SPIRE's flow: the agent ID comes from the
// attestor only (never from the request, T5), a banned agent is refused,
// the node selectors are stored and the attested-node record is created or
// refreshed with the new serial number. Challenge rounds (x509pop) go over
// the stream.
//
// Every call that reaches the attestor or fails before it is counted in
// Metrics; a refused attestation is logged at warn ("Agent attestation
// failed") with the caller's address, the attestor and the reason.
func (s *Service) AttestAgent(stream agentv1.Agent_AttestAgentServer) (err error) {
	ctx := stream.Context()
	log := api.Logger(ctx)
	if s.ca == nil {
		return status.Error(codes.Unimplemented, "method AttestAgent not implemented")
	}
	var typ string
	defer func() { s.metrics.NodeAttestation(typ, err) }()
	req, err := stream.Recv()
	if err != nil {
		return api.MakeErr(log, codes.InvalidArgument, "failed to receive request from stream", err)
	}
	params := req.GetParams()
	if err := validateAttestParams(params); err != nil {
		return api.MakeErr(log, codes.InvalidArgument, "malformed param", err)
	}
	typ = params.Data.Type
	log = log.With(slog.String("node_attestor_type", typ))
	attestor, ok := s.attestors[typ]
	if !ok {
		return api.MakeErr(log, codes.FailedPrecondition, "error getting node attestor", api.Publicf("could not find node attestor type %q", typ))
	}
	result, err := attestor.Attest(ctx, params.Data.Payload, func(ctx context.Context, challenge []byte) ([]byte, error) {
		if err := stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Challenge{Challenge: challenge}}); err != nil {
			return nil, api.MakeErr(log, codes.Internal, "failed to send challenge to agent", err)
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, api.MakeErr(log, codes.Internal, "failed to receive challenge from agent", err)
		}
		return resp.GetChallengeResponse(), nil
	})
	if err != nil {
		if r, ok := nodeattest.IsRefusal(err); ok {
			code := codes.InvalidArgument
			if r.Denied {
				code = codes.PermissionDenied
			}
			if r.Err != nil {
				log = log.With(slog.String(api.KeyError, r.Err.Error()))
			}
			log.Warn("Agent attestation failed", slog.String(telemetry.Reason, r.Msg))
			return status.Error(code, r.Msg)
		}
		if _, isStatus := status.FromError(err); isStatus {
			return err
		}
		return api.MakeErr(log, codes.Internal, "failed to attest", err)
	}

	agentID := result.AgentID
	log = log.With(slog.String("agent_id", agentID.String()))
	switch {
	case !agentID.MemberOf(s.td):
		return api.MakeErr(log, codes.Internal, "invalid agent ID", api.Publicf("%q is not a member of trust domain %q", agentID, s.td))
	case agentID.Path() == "/spire/server":
		return api.MakeErr(log, codes.Internal, "agent ID cannot collide with the server ID", nil)
	case !strings.HasPrefix(agentID.Path(), "/spire/agent/"+typ+"/"):
		log.Warn("The node attestor produced an agent ID outside its reserved namespace")
	}

	node, err := s.store.FetchAttestedNode(ctx, agentID.String())
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		node = nil
	case err != nil:
		return api.MakeErr(log, codes.Internal, "failed to fetch agent", err)
	case node.CertSerialNumber == "":
		log.Warn("Agent attestation failed", slog.String(telemetry.Reason, "agent is banned"))
		return status.Error(codes.PermissionDenied, "failed to attest: agent is banned")
	}

	chain, err := s.signAgent(ctx, log, agentID, params.Params.Csr)
	if err != nil {
		return err
	}
	if err := s.store.SetNodeSelectors(ctx, agentID.String(), dedupe(result.Selectors)); err != nil {
		return api.MakeErr(log, codes.Internal, "failed to update selectors", err)
	}
	rec := &datastore.AttestedNode{
		SPIFFEID:         agentID.String(),
		AttestationType:  typ,
		CertSerialNumber: chain[0].SerialNumber.String(),
		CertNotAfter:     chain[0].NotAfter.Unix(),
		CanReattest:      result.CanReattest,
	}
	if node == nil {
		_, err = s.store.CreateAttestedNode(ctx, rec)
	} else {
		// A new attestation replaces the current and any pending serial.
		_, err = s.store.UpdateAttestedNode(ctx, rec, nil)
	}
	if err != nil {
		return api.MakeErr(log, codes.Internal, "failed to store attested agent", err)
	}
	s.changed()
	if s.catchUp != nil {
		if err := s.catchUp(ctx); err != nil {
			log.Warn("Failed to update the authorized-entry index", slog.String(api.KeyError, err.Error()))
		}
	}
	log.Info("Agent attestation request completed")
	return stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result_{
		Result: &agentv1.AttestAgentResponse_Result{Svid: x509SVID(agentID, chain), Reattestable: result.CanReattest},
	}})
}

func validateAttestParams(p *agentv1.AttestAgentRequest_Params) error {
	switch {
	case p == nil:
		return api.Publicf("missing params")
	case p.Data == nil:
		return api.Publicf("missing attestation data")
	case p.Params == nil:
		return api.Publicf("missing X509-SVID parameters")
	case len(p.Params.Csr) == 0:
		return api.Publicf("missing CSR")
	case p.Data.Type == "":
		return api.Publicf("missing attestation data type")
	case len(p.Data.Payload) == 0:
		return api.Publicf("missing attestation data payload")
	}
	return nil
}

// signAgent signs an agent SVID for the key of csr; only the key is taken
// from the CSR (T1).
func (s *Service) signAgent(ctx context.Context, log *slog.Logger, id spiffeid.ID, csrDER []byte) ([]*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "failed to parse CSR", api.Publicf("%v", err))
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "invalid CSR signature", api.Publicf("%v", err))
	}
	chain, err := s.ca.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: id, PublicKey: csr.PublicKey, TTL: s.agentTTL})
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to sign X509 SVID", err)
	}
	return chain, nil
}

func x509SVID(id spiffeid.ID, chain []*x509.Certificate) *types.X509SVID {
	raw := make([][]byte, 0, len(chain))
	for _, c := range chain {
		raw = append(raw, c.Raw)
	}
	return &types.X509SVID{Id: api.ProtoFromID(id), CertChain: raw, ExpiresAt: chain[0].NotAfter.Unix()}
}

func dedupe(sels []datastore.Selector) []datastore.Selector {
	out := slices.Clone(sels)
	slices.SortFunc(out, func(a, b datastore.Selector) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return slices.Compact(out)
}

// RenewAgent signs a new SVID for the calling agent (authenticated by its
// current SVID) and records its serial as the pending one; the old SVID
// stays valid until the agent uses the new one (authz.CheckAgent). An agent
// that can re-attest must do so instead.
func (s *Service) RenewAgent(ctx context.Context, req *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	log := api.Logger(ctx)
	if s.ca == nil {
		return nil, status.Error(codes.Unimplemented, "method RenewAgent not implemented")
	}
	caller, ok := api.CallerFrom(ctx)
	if !ok || caller.ID.IsZero() {
		return nil, api.MakeErr(log, codes.Internal, "caller ID missing from request context", nil)
	}
	node, err := s.store.FetchAttestedNode(ctx, caller.ID.String())
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, "agent not found", nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to fetch agent", err)
	case node.CanReattest:
		return nil, api.PermissionDenied(log, types.PermissionDeniedDetails_AGENT_MUST_REATTEST, "agent must reattest instead of renew")
	}
	if req.Params == nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "params cannot be nil", nil)
	}
	if len(req.Params.Csr) == 0 {
		return nil, api.MakeErr(log, codes.InvalidArgument, "missing CSR", nil)
	}
	log.Info("Renewing agent SVID")
	chain, err := s.signAgent(ctx, log, caller.ID, req.Params.Csr)
	if err != nil {
		return nil, err
	}
	_, err = s.store.UpdateAttestedNode(ctx, &datastore.AttestedNode{
		SPIFFEID:            caller.ID.String(),
		NewCertSerialNumber: chain[0].SerialNumber.String(),
		NewCertNotAfter:     chain[0].NotAfter.Unix(),
	}, &datastore.AttestedNodeMask{NewCertSerialNumber: true, NewCertNotAfter: true})
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, "agent not found", nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to update agent", err)
	}
	return &agentv1.RenewAgentResponse{Svid: x509SVID(caller.ID, chain)}, nil
}
