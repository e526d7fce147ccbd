// Package servertest is a fake SPIRE server for agent tests: the server
// side of SPIRE 1.13's agent<->server protocol on a loopback TCP port over
// TLS, with a test CA, join tokens, SPIRE's agent authentication
// (PermissionDeniedDetails for evicted, banned and inactive agents), the
// push extension (optional), and error injection. Every entry it holds is
// authorized to every agent.
//
// It is a fake, not the server: it follows the protocol closely enough to
// check the agent, and counts calls so tests can assert what the agent did.
package servertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"context"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/push"
)

// Options shape the fake's behaviour.
type Options struct {
	// AgentTTL is the lifetime of agent SVIDs. Zero: one hour.
	AgentTTL time.Duration
	// SVIDTTL is the lifetime of workload X509-SVIDs. Zero: one hour.
	SVIDTTL time.Duration
	// JWTTTL is the lifetime of JWT-SVIDs. Zero: five minutes.
	JWTTTL time.Duration
	// NoPush leaves the push extension out (a SPIRE server): Watch is
	// Unimplemented.
	NoPush bool
	// NoSyncAuthorizedEntries makes SyncAuthorizedEntries Unimplemented (a
	// server older than SPIRE 1.10).
	NoSyncAuthorizedEntries bool
	// EntryPageSize is SyncAuthorizedEntries' page size. Zero: 1000.
	EntryPageSize int
}

// ReattestType is the attestation type of reattestable test nodes (see
// AddNode): the payload is the node name, the agent ID
// spiffe://<td>/spire/agent/test/<name>.
const ReattestType = "test_reattest"

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	tb testing.TB
	// CA is the first authority; it signs until TaintAndRotate.
	CA   *CA
	TD   spiffeid.TrustDomain
	opts Options

	serverCert tls.Certificate
	jwtKey     *ecdsa.PrivateKey

	mu        sync.Mutex
	active    *CA
	tainted   []*CA
	addr      string
	gs        *grpc.Server
	done      chan struct{}
	tokens    map[string]struct{}
	nodes     map[string]struct{}
	agents    map[spiffeid.ID]*agentRecord
	entries   map[string]*types.Entry
	federated map[string]*types.Bundle
	revision  int64
	watchers  map[*watcher]struct{}
	calls     map[string]int
	batches   [][]*svidv1.NewX509SVIDParams
	failNext  map[string][]error
}

type agentRecord struct {
	serial       *big.Int
	newSerial    *big.Int
	banned       bool
	reattestable bool
}

type watcher struct {
	agent spiffeid.ID
	revs  chan int64
	kill  chan error
}

// New starts a fake server for td on 127.0.0.1 and stops it at cleanup.
func New(tb testing.TB, td spiffeid.TrustDomain, opts Options) *Server {
	tb.Helper()
	if opts.AgentTTL <= 0 {
		opts.AgentTTL = time.Hour
	}
	if opts.SVIDTTL <= 0 {
		opts.SVIDTTL = time.Hour
	}
	if opts.JWTTTL <= 0 {
		opts.JWTTTL = 5 * time.Minute
	}
	if opts.EntryPageSize <= 0 {
		opts.EntryPageSize = 1000
	}
	ca := NewCA(tb, td)
	serverKey := newKey(tb)
	chain, err := ca.Sign(spiffeid.RequireFromPath(td, "/spire/server"), serverKey.Public(), 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{
		tb:         tb,
		CA:         ca,
		TD:         td,
		opts:       opts,
		serverCert: tls.Certificate{Certificate: [][]byte{chain[0].Raw, chain[1].Raw}, PrivateKey: serverKey, Leaf: chain[0]},
		jwtKey:     jwtKey,
		active:     ca,
		addr:       "127.0.0.1:0",
		tokens:     make(map[string]struct{}),
		nodes:      make(map[string]struct{}),
		agents:     make(map[spiffeid.ID]*agentRecord),
		entries:    make(map[string]*types.Entry),
		federated:  make(map[string]*types.Bundle),
		watchers:   make(map[*watcher]struct{}),
		calls:      make(map[string]int),
		failNext:   make(map[string][]error),
	}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// Addr returns host:port of the server; it stays the same across Stop and
// Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Bundle returns the trust domain's X.509 authorities: the roots of the
// tainted authorities, then the active one's.
func (s *Server) Bundle() []*x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*x509.Certificate
	for _, ca := range s.tainted {
		out = append(out, ca.Root)
	}
	return append(out, s.active.Root)
}

// ActiveCA returns the authority that signs new SVIDs.
func (s *Server) ActiveCA() *CA {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// TaintAndRotate makes a new authority active and marks the previous one
// tainted in the bundle (spire-server localauthority x509 taint), then
// pushes a new revision. The server keeps its own TLS certificate, which
// still chains to the tainted root.
func (s *Server) TaintAndRotate() *CA {
	s.tb.Helper()
	next := NewCA(s.tb, s.TD)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tainted = append(s.tainted, s.active)
	s.active = next
	s.bumpLocked()
	return next
}

// sign signs with the active authority.
func (s *Server) sign(id spiffeid.ID, pub crypto.PublicKey, ttl time.Duration, dnsNames ...string) ([]*x509.Certificate, error) {
	return s.ActiveCA().Sign(id, pub, ttl, dnsNames...)
}

// Start serves on the server's address (a new port the first time). It is
// a no-op when serving.
func (s *Server) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gs != nil {
		return
	}
	var l net.Listener
	var err error
	for range 50 { // the port may linger briefly after Stop
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.tb.Fatalf("servertest: listen: %v", err)
	}
	s.addr = l.Addr().String()
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Client CAs follow the bundle, as authorities rotate.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool := x509.NewCertPool()
			for _, r := range s.Bundle() {
				pool.AddCert(r)
			}
			return &tls.Config{
				Certificates:           []tls.Certificate{s.serverCert},
				ClientAuth:             tls.VerifyClientCertIfGiven,
				ClientCAs:              pool,
				MinVersion:             tls.VersionTLS12,
				SessionTicketsDisabled: true,
			}, nil
		},
	}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConf)),
		grpc.UnaryInterceptor(s.unary),
		grpc.StreamInterceptor(s.stream),
	)
	agentv1.RegisterAgentServer(gs, agentService{s: s})
	bundlev1.RegisterBundleServer(gs, bundleService{s: s})
	entryv1.RegisterEntryServer(gs, entryService{s: s})
	svidv1.RegisterSVIDServer(gs, svidService{s: s})
	if !s.opts.NoPush {
		push.Register(gs, pushService{s: s})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(l)
	}()
	s.gs, s.done = gs, done
}

// Stop stops serving and closes every connection; the agent sees the
// server down. State (agents, entries) is kept for Start.
func (s *Server) Stop() {
	s.mu.Lock()
	gs, done := s.gs, s.done
	s.gs, s.done = nil, nil
	s.mu.Unlock()
	if gs != nil {
		gs.Stop()
		<-done
	}
}

// AddJoinToken registers a single-use join token.
func (s *Server) AddJoinToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = struct{}{}
}

// AddNode registers a node that attests with ReattestType, reattestably.
func (s *Server) AddNode(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes[name] = struct{}{}
}

// SetEntries adds or replaces entries (by ID, bumping their revision when
// they existed) and pushes a new revision.
func (s *Server) SetEntries(entries ...*types.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		if old, ok := s.entries[e.Id]; ok {
			e.RevisionNumber = old.RevisionNumber + 1
			e.CreatedAt = old.CreatedAt
		} else if e.CreatedAt == 0 {
			e.CreatedAt = time.Now().Unix()
		}
		s.entries[e.Id] = e
	}
	s.bumpLocked()
}

// DeleteEntries removes entries and pushes a new revision.
func (s *Server) DeleteEntries(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.entries, id)
	}
	s.bumpLocked()
}

// SetFederatedBundle sets the bundle of a federated trust domain.
func (s *Server) SetFederatedBundle(td spiffeid.TrustDomain, roots ...*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &types.Bundle{TrustDomain: td.Name()}
	for _, r := range roots {
		b.X509Authorities = append(b.X509Authorities, &types.X509Certificate{Asn1: r.Raw})
	}
	s.federated[td.Name()] = b
	s.bumpLocked()
}

// Revision returns the current revision.
func (s *Server) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revision
}

// bumpLocked increments the revision and tells every watcher the latest.
func (s *Server) bumpLocked() {
	s.revision++
	for w := range s.watchers {
		select {
		case <-w.revs:
		default:
		}
		w.revs <- s.revision
	}
}

// Ban bans an agent: its calls fail with PermissionDenied AGENT_BANNED and
// its push streams end.
func (s *Server) Ban(id spiffeid.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.agents[id]; ok {
		rec.banned = true
	}
	s.killWatchersLocked(id, permissionDenied(types.PermissionDeniedDetails_AGENT_BANNED, "agent %q is banned", id))
}

// Evict deletes an agent: its calls fail with PermissionDenied
// AGENT_NOT_ATTESTED and its push streams end.
func (s *Server) Evict(id spiffeid.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.agents, id)
	s.killWatchersLocked(id, permissionDenied(types.PermissionDeniedDetails_AGENT_NOT_ATTESTED, "agent %q is not attested", id))
}

func (s *Server) killWatchersLocked(id spiffeid.ID, err error) {
	for w := range s.watchers {
		if w.agent == id {
			select {
			case w.kill <- err:
			default:
			}
		}
	}
}

// Agents returns the IDs of the attested agents.
func (s *Server) Agents() []spiffeid.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []spiffeid.ID
	for id := range s.agents {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b spiffeid.ID) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// Calls returns how many times method ("AttestAgent", "BatchNewX509SVID",
// "Watch"...) was called.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Batches returns the entry IDs of each BatchNewX509SVID call, in order.
func (s *Server) Batches() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]string, len(s.batches))
	for i, b := range s.batches {
		for _, p := range b {
			out[i] = append(out[i], p.GetEntryId())
		}
	}
	return out
}

// BatchParams returns the params of each BatchNewX509SVID call, in order.
func (s *Server) BatchParams() [][]*svidv1.NewX509SVIDParams {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

// FailNext makes the next call of method fail with err (queued).
func (s *Server) FailNext(method string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[method] = append(s.failNext[method], err)
}

// Entry returns an entry for tests: spiffeID in the server's trust domain
// path form ("/workload"), parented to nothing in particular, with
// "type:value" selectors.
func Entry(id string, td spiffeid.TrustDomain, path string, selectors ...string) *types.Entry {
	e := &types.Entry{
		Id:       id,
		SpiffeId: &types.SPIFFEID{TrustDomain: td.Name(), Path: path},
		ParentId: &types.SPIFFEID{TrustDomain: td.Name(), Path: "/spire/agent/any"},
	}
	for _, sel := range selectors {
		typ, val, _ := strings.Cut(sel, ":")
		e.Selectors = append(e.Selectors, &types.Selector{Type: typ, Value: val})
	}
	return e
}

// method returns the short name of a full gRPC method.
func method(full string) string {
	return full[strings.LastIndex(full, "/")+1:]
}

// public methods need no agent SVID.
func public(m string) bool { return m == "AttestAgent" || m == "GetBundle" }

// before counts the call, applies injected errors and authenticates the
// agent; it returns the agent ID for authenticated methods.
func (s *Server) before(ctx context.Context, full string) (spiffeid.ID, error) {
	m := method(full)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[m]++
	if q := s.failNext[m]; len(q) > 0 {
		s.failNext[m] = q[1:]
		return spiffeid.ID{}, q[0]
	}
	if m == "SyncAuthorizedEntries" && s.opts.NoSyncAuthorizedEntries {
		return spiffeid.ID{}, status.Error(codes.Unimplemented, "unknown method SyncAuthorizedEntries")
	}
	if public(m) {
		return spiffeid.ID{}, nil
	}
	return s.authLocked(ctx)
}

// authLocked is SPIRE's agent check: the caller presents an agent SVID of
// an attested, unbanned agent whose serial is the current or the new one.
func (s *Server) authLocked(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, status.Error(codes.PermissionDenied, "caller is not an agent")
	}
	leaf := info.State.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, status.Error(codes.PermissionDenied, "caller has no SPIFFE ID")
	}
	rec, ok := s.agents[id]
	switch {
	case !ok:
		return id, permissionDenied(types.PermissionDeniedDetails_AGENT_NOT_ATTESTED, "agent %q is not attested", id)
	case rec.banned:
		return id, permissionDenied(types.PermissionDeniedDetails_AGENT_BANNED, "agent %q is banned", id)
	case rec.newSerial != nil && leaf.SerialNumber.Cmp(rec.newSerial) == 0:
		rec.serial, rec.newSerial = rec.newSerial, nil
	case leaf.SerialNumber.Cmp(rec.serial) != 0:
		return id, permissionDenied(types.PermissionDeniedDetails_AGENT_NOT_ACTIVE, "agent %q expected to have serial number %q; has %q", id, rec.serial, leaf.SerialNumber)
	}
	return id, nil
}

type agentKey struct{}

func (s *Server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, err := s.before(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(context.WithValue(ctx, agentKey{}, id), req)
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrappedStream) Context() context.Context { return w.ctx }

func (s *Server) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id, err := s.before(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, wrappedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), agentKey{}, id)})
}

func callerID(ctx context.Context) spiffeid.ID {
	id, _ := ctx.Value(agentKey{}).(spiffeid.ID)
	return id
}

func permissionDenied(reason types.PermissionDeniedDetails_Reason, format string, args ...any) error {
	st, err := status.New(codes.PermissionDenied, fmt.Sprintf(format, args...)).WithDetails(&types.PermissionDeniedDetails{Reason: reason})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func x509SVIDProto(id spiffeid.ID, chain []*x509.Certificate) *types.X509SVID {
	out := &types.X509SVID{
		Id:        &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()},
		ExpiresAt: chain[0].NotAfter.Unix(),
	}
	for _, c := range chain {
		out.CertChain = append(out.CertChain, c.Raw)
	}
	return out
}

var errNoCSR = errors.New("missing CSR")
