package sync

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	"github.com/neural-hive/hive-identity/internal/agent/nodeattest"
)

// DefaultRPCTimeout bounds each call to the server.
const DefaultRPCTimeout = 30 * time.Second

// KeyManager keeps the private keys of the agent SVID
// (*storage.DiskKeyManager, *storage.MemoryKeyManager).
type KeyManager interface {
	// GenerateKey creates a key under id, replacing any, and returns it.
	GenerateKey(id string) (crypto.Signer, error)
	// Key returns the key under id; an error (storage.ErrNotFound) when none.
	Key(id string) (crypto.Signer, error)
}

// Store persists the agent SVID and the trust domain's X.509 authorities
// (*storage.Store). Load methods return an error when nothing is stored.
type Store interface {
	SVID() (chain []*x509.Certificate, reattestable bool, err error)
	SetSVID(chain []*x509.Certificate, reattestable bool) error
	DeleteSVID() error
	Bundle() ([]*x509.Certificate, error)
	SetBundle(authorities []*x509.Certificate) error
}

// Metrics receives the agent's measurements (*telemetry.AgentMetrics
// implements it). The Client and the Syncer built on it report to the
// Client's Metrics.
type Metrics interface {
	// NodeAttestationFailed counts a failed node attestation attempt
	// (spire_agent_attestation_errors_total{type="node"}); reason is
	// telemetry.ReasonFromError of the failure.
	NodeAttestationFailed(attestor, reason string)
	// SetAgentSVID records the validity of the agent's own SVID.
	SetAgentSVID(notBefore, notAfter time.Time)
	// RevisionAnnounced records a revision the server pushed.
	RevisionAnnounced(revision int64)
	// SyncCompleted records a successful sync that applied revision.
	SyncCompleted(revision int64, at time.Time)
	// ObservePropagation records the time from a pushed revision to the
	// end of the sync that applied it (entries, bundles and SVIDs in the
	// cache).
	ObservePropagation(d time.Duration)
}

type noMetrics struct{}

func (noMetrics) NodeAttestationFailed(string, string) {}
func (noMetrics) SetAgentSVID(time.Time, time.Time)    {}
func (noMetrics) RevisionAnnounced(int64)              {}
func (noMetrics) SyncCompleted(int64, time.Time)       {}
func (noMetrics) ObservePropagation(time.Duration)     {}

// ClientConfig configures a Client.
type ClientConfig struct {
	// ServerAddress is the gRPC target of the server's TCP endpoint,
	// "host:port" (server_address:server_port). Required.
	ServerAddress string
	// TrustDomain is the agent's trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// TrustBundle holds the bootstrap X.509 authorities (trust_bundle_path).
	// Used only while data_dir holds no bundle. Required unless
	// InsecureBootstrap.
	TrustBundle []*x509.Certificate
	// InsecureBootstrap attests without verifying the server's chain (only
	// its SPIFFE ID), when data_dir holds no bundle; TrustBundle is ignored.
	InsecureBootstrap bool
	// Attestor attests the node when no usable SVID is stored (and, when the
	// server says the agent is reattestable, renews by attesting again).
	// Nil: the agent can only run with a stored SVID.
	Attestor nodeattest.Attestor
	// AttestOnce fails Init on the first failed attestation instead of
	// retrying with backoff while the server is unreachable (agent
	// retry_bootstrap = false).
	AttestOnce bool
	// Store is data_dir. Required.
	Store Store
	// KeyManager keeps the agent SVID keys. Required.
	KeyManager KeyManager
	// Logger receives the client's logs. Nil: discarded.
	Logger *slog.Logger
	// Rand jitters retry delays. Nil: seeded from the runtime.
	Rand *rand.Rand
	// Metrics receives measurements. Nil: none.
	Metrics Metrics
	// RPCTimeout bounds each call. Zero: DefaultRPCTimeout.
	RPCTimeout time.Duration
}

// Client holds the agent's identity and its connection to the server. After
// Init, its methods are safe for concurrent use.
type Client struct {
	cfg      ClientConfig
	log      *slog.Logger
	metrics  Metrics
	serverID spiffeid.ID
	jitter   *jitter

	creds  atomic.Pointer[agentCreds]
	bundle atomic.Pointer[x509bundle.Bundle]

	// rotMu serialises renewals and re-attestations.
	rotMu sync.Mutex

	// mu guards the connection: RPCs hold it for reading, a credential
	// change swaps the connection holding it for writing.
	mu     sync.RWMutex
	cc     *grpc.ClientConn
	gen    uint64
	closed bool
}

// agentCreds is the agent SVID, its key and where the key is kept.
type agentCreds struct {
	svid         *x509svid.SVID
	slot         string
	reattestable bool
}

// NewClient checks cfg and returns a Client. It does not contact the
// server; call Init.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case cfg.ServerAddress == "":
		return nil, wrapErr(errors.New("server address is required"))
	case cfg.TrustDomain.IsZero():
		return nil, wrapErr(errors.New("trust domain is required"))
	case cfg.Store == nil:
		return nil, wrapErr(errors.New("store is required"))
	case cfg.KeyManager == nil:
		return nil, wrapErr(errors.New("key manager is required"))
	}
	serverID, err := spiffeid.FromPath(cfg.TrustDomain, "/spire/server")
	if err != nil {
		return nil, wrapErr(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = DefaultRPCTimeout
	}
	var m Metrics = noMetrics{}
	if cfg.Metrics != nil {
		m = cfg.Metrics
	}
	return &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		metrics:  m,
		serverID: serverID,
		jitter:   newJitter(cfg.Rand),
	}, nil
}

// ID returns the agent's SPIFFE ID; the zero ID before Init.
func (c *Client) ID() spiffeid.ID {
	if cur := c.creds.Load(); cur != nil {
		return cur.svid.ID
	}
	return spiffeid.ID{}
}

// SVID returns the current agent X509-SVID; nil before Init. It must not be
// modified.
func (c *Client) SVID() *x509svid.SVID {
	if cur := c.creds.Load(); cur != nil {
		return cur.svid
	}
	return nil
}

// TrustDomain returns the agent's trust domain.
func (c *Client) TrustDomain() spiffeid.TrustDomain { return c.cfg.TrustDomain }

// Close closes the connection to the server. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	cc := c.cc
	c.cc = nil
	c.closed = true
	c.mu.Unlock()
	if cc != nil {
		return cc.Close()
	}
	return nil
}

// errNotConnected is returned by calls before Init or after Close.
var errNotConnected = errors.New("sync: client is not connected")

// call runs fn on the mTLS connection with a per-call timeout. A
// credential swap waits for calls in flight.
func (c *Client) call(ctx context.Context, fn func(ctx context.Context, cc grpc.ClientConnInterface) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RPCTimeout)
	defer cancel()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.cc == nil {
		return errNotConnected
	}
	return fn(ctx, c.cc)
}

// conn returns the current connection and its generation, for streams that
// outlive one call (push.Watch); a new generation means the connection was
// replaced and the stream should be opened again.
func (c *Client) conn() (*grpc.ClientConn, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cc, c.gen
}

func (c *Client) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// reconnectNow asks gRPC to retry a failed connection at once (the loops'
// own backoff has already waited).
func (c *Client) reconnectNow() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.cc != nil {
		c.cc.ResetConnectBackoff()
	}
}

// install makes cur the agent's credentials and replaces the mTLS
// connection, so the next calls present the new certificate.
func (c *Client) install(cur *agentCreds) error {
	c.creds.Store(cur)
	leaf := cur.svid.Certificates[0]
	c.metrics.SetAgentSVID(leaf.NotBefore, leaf.NotAfter)
	cc, err := c.dial(c.mtlsConfig())
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = cc.Close()
		return errNotConnected
	}
	old := c.cc
	c.cc = cc
	c.gen++
	c.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// setBundle replaces the X.509 authorities that authenticate the server and
// persists them when they changed.
func (c *Client) setBundle(authorities []*x509.Certificate) error {
	if len(authorities) == 0 {
		return wrapErr(errors.New("server bundle has no X.509 authorities"))
	}
	if cur := c.bundle.Load(); cur != nil && sameCerts(cur.X509Authorities(), authorities) {
		return nil
	}
	return c.storeBundle(authorities)
}

// storeBundle replaces the X.509 authorities that authenticate the server
// and persists them.
func (c *Client) storeBundle(authorities []*x509.Certificate) error {
	c.bundle.Store(x509bundle.FromX509Authorities(c.cfg.TrustDomain, authorities))
	if err := c.cfg.Store.SetBundle(authorities); err != nil {
		return wrapErr(fmt.Errorf("store bundle: %w", err))
	}
	return nil
}

func sameCerts(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y *x509.Certificate) bool { return x.Equal(y) })
}

func wrapErr(err error) error {
	return fmt.Errorf("sync: %w", err)
}
