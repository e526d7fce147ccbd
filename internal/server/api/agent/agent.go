// Package agent implements the admin part of the spire.api.server.agent.v1
// Agent service: counting, listing, reading, evicting (DeleteAgent) and
// banning attested agents, and creating join tokens, with SPIRE 1.13's codes
// and messages. Agents and tokens live in the datastore, reached through the
// Store interface. The agent-facing RPCs (AttestAgent, RenewAgent) are
// served by the node attestation side when it is configured and are
// Unimplemented otherwise; PostStatus is Unimplemented, as in SPIRE.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/nodeattest"
)

// Store is the part of the datastore the agent service uses;
// *datastore.Store satisfies it.
type Store interface {
	CountAttestedNodes(ctx context.Context, req *datastore.ListAttestedNodesRequest) (int32, error)
	ListAttestedNodes(ctx context.Context, req *datastore.ListAttestedNodesRequest) ([]*datastore.AttestedNode, string, error)
	FetchAttestedNode(ctx context.Context, spiffeID string) (*datastore.AttestedNode, error)
	UpdateAttestedNode(ctx context.Context, n *datastore.AttestedNode, mask *datastore.AttestedNodeMask) (*datastore.AttestedNode, error)
	DeleteAttestedNode(ctx context.Context, spiffeID string) (*datastore.AttestedNode, error)
	CreateJoinToken(ctx context.Context, t *datastore.JoinToken) error
	CreateEntry(ctx context.Context, e *datastore.Entry) (*datastore.Entry, error)
	CreateAttestedNode(ctx context.Context, n *datastore.AttestedNode) (*datastore.AttestedNode, error)
	SetNodeSelectors(ctx context.Context, spiffeID string, sels []datastore.Selector) error
}

// CA signs agent SVIDs; *ca.CA satisfies it.
type CA interface {
	SignX509SVID(ctx context.Context, p ca.X509SVIDParams) ([]*x509.Certificate, error)
}

// Config configures a Service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	// CA, when set, signs agent SVIDs: AttestAgent and RenewAgent are
	// Unimplemented without it.
	CA CA
	// NodeAttestors are the configured node attestors by type
	// ("join_token", "x509pop").
	NodeAttestors map[string]nodeattest.Attestor
	// AgentSVIDTTL is the lifetime of agent SVIDs (0: the CA's default).
	AgentSVIDTTL time.Duration
	// Changed, when set, is called after an attestation changed a node.
	Changed func()
	// CatchUp, when set, is called after an attestation, before the answer:
	// it brings the authorized-entry index up to date so that the agent's
	// first sync sees its entries (read your writes).
	CatchUp func(ctx context.Context) error
	// AgentRemoved, when set, is called after an agent was evicted or
	// banned, so that its open streams can be closed at once (T3).
	AgentRemoved func(spiffeID string)
	// Clock, when set, replaces time.Now for join token expiry.
	Clock func() time.Time
	// Metrics, when set, counts node attestations
	// (*telemetry.ServerMetrics satisfies it).
	Metrics Metrics
}

// Metrics counts node attestations by attestor and result.
type Metrics interface {
	// NodeAttestation counts one AttestAgent call: a success when err is
	// nil. attestor is the attestation data type ("" when the request
	// carried none).
	NodeAttestation(attestor string, err error)
}

type noMetrics struct{}

func (noMetrics) NodeAttestation(string, error) {}

// Service serves the Agent API. It is safe for concurrent use.
type Service struct {
	agentv1.UnsafeAgentServer

	td        spiffeid.TrustDomain
	store     Store
	ca        CA
	attestors map[string]nodeattest.Attestor
	agentTTL  time.Duration
	removed   func(string)
	changed   func()
	catchUp   func(context.Context) error
	now       func() time.Time
	metrics   Metrics
}

// New returns the Agent service.
func New(c Config) (*Service, error) {
	if c.TrustDomain.IsZero() {
		return nil, errors.New("agent: trust domain is required")
	}
	if c.Store == nil {
		return nil, errors.New("agent: store is required")
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.AgentRemoved == nil {
		c.AgentRemoved = func(string) {}
	}
	if c.Changed == nil {
		c.Changed = func() {}
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	return &Service{td: c.TrustDomain, store: c.Store, ca: c.CA, attestors: c.NodeAttestors, agentTTL: c.AgentSVIDTTL,
		removed: c.AgentRemoved, changed: c.Changed, catchUp: c.CatchUp, now: c.Clock, metrics: c.Metrics}, nil
}

// Register registers the service on r.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	agentv1.RegisterAgentServer(r, s)
}

// expiresBeforeLayout is the layout of the by_expires_before filter (SPIRE).
const expiresBeforeLayout = "2006-01-02 15:04:05 -0700 -07"

type agentFilter interface {
	GetByAttestationType() string
	GetBySelectorMatch() *types.SelectorMatch
	GetByExpiresBefore() string
}

func listRequest(log *slog.Logger, f agentFilter) (*datastore.ListAttestedNodesRequest, error) {
	req := &datastore.ListAttestedNodesRequest{}
	if f == nil {
		return req, nil
	}
	req.ByAttestationType = f.GetByAttestationType()
	if s := f.GetByExpiresBefore(); s != "" {
		// As SPIRE: an unparsable time means no filter.
		if t, err := time.Parse(expiresBeforeLayout, s); err == nil {
			req.ByExpiresBefore = t.Unix()
		}
	}
	if m := f.GetBySelectorMatch(); m != nil {
		sels, err := api.SelectorsFromProto(m.Selectors)
		if err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "failed to parse selectors", err)
		}
		match, err := api.MatchFromProto(m.Match)
		if err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "failed to parse selectors", err)
		}
		req.BySelectorMatch = &datastore.BySelectors{Selectors: sels, Match: match}
	}
	return req, nil
}

// CountAgents returns the number of attested agents matching the filter.
func (s *Service) CountAgents(ctx context.Context, req *agentv1.CountAgentsRequest) (*agentv1.CountAgentsResponse, error) {
	log := api.Logger(ctx)
	var f agentFilter
	if req.Filter != nil {
		f = req.Filter
	}
	lr, err := listRequest(log, f)
	if err != nil {
		return nil, err
	}
	if req.Filter != nil {
		lr.ByBanned = boolPtr(req.Filter.ByBanned.GetValue(), req.Filter.ByBanned != nil)
		lr.ByCanReattest = boolPtr(req.Filter.ByCanReattest.GetValue(), req.Filter.ByCanReattest != nil)
	}
	n, err := s.store.CountAttestedNodes(ctx, lr)
	if err != nil {
		return nil, api.MakeErr(log, api.ReadCode(err), "failed to count agents", err)
	}
	return &agentv1.CountAgentsResponse{Count: n}, nil
}

// ListAgents returns the attested agents matching the filter, a page at a
// time when page_size is set.
func (s *Service) ListAgents(ctx context.Context, req *agentv1.ListAgentsRequest) (*agentv1.ListAgentsResponse, error) {
	log := api.Logger(ctx)
	var f agentFilter
	if req.Filter != nil {
		f = req.Filter
	}
	lr, err := listRequest(log, f)
	if err != nil {
		return nil, err
	}
	if req.Filter != nil {
		lr.ByBanned = boolPtr(req.Filter.ByBanned.GetValue(), req.Filter.ByBanned != nil)
		lr.ByCanReattest = boolPtr(req.Filter.ByCanReattest.GetValue(), req.Filter.ByCanReattest != nil)
	}
	lr.FetchSelectors = req.OutputMask == nil || req.OutputMask.Selectors
	lr.Pagination = api.Pagination(req.PageSize, req.PageToken)
	nodes, next, err := s.store.ListAttestedNodes(ctx, lr)
	if err != nil {
		return nil, api.MakeErr(log, api.ReadCode(err), "failed to list agents", err)
	}
	resp := &agentv1.ListAgentsResponse{NextPageToken: next, Agents: make([]*types.Agent, 0, len(nodes))}
	for _, n := range nodes {
		a, err := api.ProtoFromAgent(n)
		if err != nil {
			log.Warn("Failed to parse agent", slog.String(api.KeySPIFFEID, n.SPIFFEID), slog.String(api.KeyError, err.Error()))
			continue
		}
		api.ApplyAgentMask(a, req.OutputMask)
		resp.Agents = append(resp.Agents, a)
	}
	return resp, nil
}

func boolPtr(v, set bool) *bool {
	if !set {
		return nil
	}
	return &v
}

// GetAgent returns one attested agent with its selectors.
func (s *Service) GetAgent(ctx context.Context, req *agentv1.GetAgentRequest) (*types.Agent, error) {
	log := api.Logger(ctx)
	id, err := api.AgentIDFromProto(s.td, req.Id)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "invalid agent ID", err)
	}
	log = log.With(slog.String(api.KeySPIFFEID, id.String()))
	n, err := s.store.FetchAttestedNode(ctx, id.String())
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, "agent not found", nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to fetch agent", err)
	}
	a, err := api.ProtoFromAgent(n)
	if err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to convert attested node to agent", err)
	}
	api.ApplyAgentMask(a, req.OutputMask)
	return a, nil
}

// DeleteAgent evicts an agent: its attested-node record goes, so its SVID is
// refused from now on and it must attest again.
func (s *Service) DeleteAgent(ctx context.Context, req *agentv1.DeleteAgentRequest) (*emptypb.Empty, error) {
	log := api.Logger(ctx)
	id, err := api.AgentIDFromProto(s.td, req.Id)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "invalid agent ID", err)
	}
	log = log.With(slog.String(api.KeySPIFFEID, id.String()))
	_, err = s.store.DeleteAttestedNode(ctx, id.String())
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, "agent not found", nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to remove agent", err)
	}
	log.Info("Agent deleted")
	s.removed(id.String())
	return &emptypb.Empty{}, nil
}

// BanAgent bans an agent: its serial numbers are cleared, so its SVID is
// refused and it may not attest again until the record is deleted.
func (s *Service) BanAgent(ctx context.Context, req *agentv1.BanAgentRequest) (*emptypb.Empty, error) {
	log := api.Logger(ctx)
	id, err := api.AgentIDFromProto(s.td, req.Id)
	if err != nil {
		return nil, api.MakeErr(log, codes.InvalidArgument, "invalid agent ID", err)
	}
	log = log.With(slog.String(api.KeySPIFFEID, id.String()))
	_, err = s.store.UpdateAttestedNode(ctx, &datastore.AttestedNode{SPIFFEID: id.String()},
		&datastore.AttestedNodeMask{CertSerialNumber: true, NewCertSerialNumber: true})
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, api.MakeErr(log, codes.NotFound, "agent not found", nil)
	case err != nil:
		return nil, api.MakeErr(log, codes.Internal, "failed to ban agent", err)
	}
	log.Info("Agent banned")
	s.removed(id.String())
	return &emptypb.Empty{}, nil
}

// CreateJoinToken creates a single-use join token valid for ttl seconds.
// The value is a random UUID unless the request gives one. With agent_id,
// SPIRE's alias is registered too: an entry with SPIFFE ID agent_id,
// parented to the agent the token will attest
// (spiffe://<td>/spire/agent/join_token/<token>), selector
// spiffe_id:<that ID>.
func (s *Service) CreateJoinToken(ctx context.Context, req *agentv1.CreateJoinTokenRequest) (*types.JoinToken, error) {
	log := api.Logger(ctx)
	if req.Ttl < 1 {
		return nil, api.MakeErr(log, codes.InvalidArgument, "ttl is required, you must provide one", nil)
	}
	var agentID spiffeid.ID
	if req.AgentId != nil {
		id, err := api.WorkloadIDFromProto(s.td, req.AgentId)
		if err != nil {
			return nil, api.MakeErr(log, codes.InvalidArgument, "invalid agent ID", err)
		}
		agentID = id
		log = log.With(slog.String(api.KeySPIFFEID, id.String()))
	}
	token := req.Token
	if token == "" {
		token = newUUID()
	}
	tokenID, err := spiffeid.FromSegments(s.td, "spire", "agent", "join_token", token)
	if err != nil {
		// A custom token that is not a valid path segment could never attest.
		return nil, api.MakeErr(log, codes.InvalidArgument, "invalid token", err)
	}
	expiry := s.now().Add(time.Duration(req.Ttl) * time.Second)
	if err := s.store.CreateJoinToken(ctx, &datastore.JoinToken{Token: token, ExpiresAt: expiry.Unix()}); err != nil {
		return nil, api.MakeErr(log, codes.Internal, "failed to create token", err)
	}
	if !agentID.IsZero() {
		_, err := s.store.CreateEntry(ctx, &datastore.Entry{
			ParentID:  tokenID.String(),
			SPIFFEID:  agentID.String(),
			Selectors: []datastore.Selector{{Type: "spiffe_id", Value: tokenID.String()}},
		})
		if err != nil {
			return nil, api.MakeErr(log, codes.Internal, "failed to create join token registration entry", err)
		}
	}
	return &types.JoinToken{Value: token, ExpiresAt: expiry.Unix()}, nil
}

// newUUID returns a random (version 4) UUID from crypto/rand.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// PostStatus is not implemented, as in SPIRE 1.13.
func (s *Service) PostStatus(context.Context, *agentv1.PostStatusRequest) (*agentv1.PostStatusResponse, error) {
	return nil, status.Error(codes.Unimplemented, "unimplemented")
}
