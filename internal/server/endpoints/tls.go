package endpoints

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ServerTLSConfig configures ServerTLS.
type ServerTLSConfig struct {
	TrustDomain spiffeid.TrustDomain
	// Sign signs an X509-SVID for id and key with the server CA; the chain
	// starts with the leaf.
	Sign func(ctx context.Context, id spiffeid.ID, key crypto.PublicKey) ([]*x509.Certificate, error)
	// ActiveAuthority returns the authority ID (lowercase hex subject key
	// ID) of the CA that signs now; when it changes the server SVID is
	// signed again, so that it chains to the active CA.
	ActiveAuthority func() string
	// Roots returns the X.509 authorities of td (the server's own bundle,
	// or a federated one for admin IDs of other trust domains).
	Roots func(ctx context.Context, td spiffeid.TrustDomain) ([]*x509.Certificate, error)
	// AdminIDs may connect from other trust domains; every other client
	// must be a member of TrustDomain.
	AdminIDs []spiffeid.ID
	// CheckInterval is how often Run checks whether to rotate (default 10s).
	CheckInterval time.Duration
	Clock         func() time.Time
	Logger        *slog.Logger
}

// ServerTLS holds the server's own X509-SVID (spiffe://<td>/spire/server)
// and builds the TLS configuration of the TCP endpoint: the server presents
// its current SVID; a client may present an X509-SVID, which is verified
// against the bundle of its trust domain at every handshake (session
// tickets are disabled, T10, SPIRE 1.14.3) with the server clock (STYLE
// T2). Clients without a certificate are let through: only AttestAgent and
// GetBundle accept them (package authz). Safe for concurrent use.
type ServerTLS struct {
	c  ServerTLSConfig
	id spiffeid.ID

	mu        sync.Mutex
	cert      *tls.Certificate
	authority string
}

// NewServerTLS signs the first server SVID.
func NewServerTLS(ctx context.Context, c ServerTLSConfig) (*ServerTLS, error) {
	switch {
	case c.TrustDomain.IsZero():
		return nil, errors.New("endpoints: trust domain is required")
	case c.Sign == nil || c.Roots == nil || c.ActiveAuthority == nil:
		return nil, errors.New("endpoints: server TLS needs a signer, an authority and roots")
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	id, err := spiffeid.FromPath(c.TrustDomain, "/spire/server")
	if err != nil {
		return nil, fmt.Errorf("endpoints: server ID: %w", err)
	}
	s := &ServerTLS{c: c, id: id}
	if err := s.rotate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ShouldRotate reports whether a server SVID leaf signed by the authority
// signedBy must be replaced at now: from half of its lifetime on, or as soon
// as another authority is active.
func ShouldRotate(now time.Time, leaf *x509.Certificate, signedBy, active string) bool {
	if leaf == nil || signedBy != active {
		return true
	}
	half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	return !now.Before(half)
}

func (s *ServerTLS) rotate(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("endpoints: server SVID key: %w", err)
	}
	authority := s.c.ActiveAuthority()
	chain, err := s.c.Sign(ctx, s.id, key.Public())
	if err != nil {
		return fmt.Errorf("endpoints: sign server SVID: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	if len(chain[0].AuthorityKeyId) > 0 {
		authority = hex.EncodeToString(chain[0].AuthorityKeyId)
	}
	s.mu.Lock()
	s.cert, s.authority = cert, authority
	s.mu.Unlock()
	s.c.Logger.Debug("Signed server SVID", slog.String("spiffe_id", s.id.String()),
		slog.String("expires_at", chain[0].NotAfter.Format(time.RFC3339)))
	return nil
}

// Run re-signs the server SVID when ShouldRotate says so, until ctx ends;
// it returns nil then. A failed rotation is logged and retried at the next
// check while the current SVID is still valid.
func (s *ServerTLS) Run(ctx context.Context) error {
	t := time.NewTicker(s.c.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.mu.Lock()
		leaf, by := s.cert.Leaf, s.authority
		s.mu.Unlock()
		if !ShouldRotate(s.c.Clock(), leaf, by, s.c.ActiveAuthority()) {
			continue
		}
		if err := s.rotate(ctx); err != nil && ctx.Err() == nil {
			s.c.Logger.Error("Failed to rotate server SVID", slog.String("error", err.Error()))
		}
	}
}

// Certificate returns the current server SVID.
func (s *ServerTLS) Certificate() *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert
}

// TLSConfig returns the configuration of the TCP endpoint.
func (s *ServerTLS) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		SessionTicketsDisabled: true,
		ClientAuth:             tls.RequestClientCert,
		NextProtos:             []string{"h2"},
		Time:                   s.c.Clock,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.Certificate(), nil
		},
		VerifyPeerCertificate: s.verifyPeer,
	}
}

// verifyPeer verifies a client X509-SVID, if one was presented, against
// the bundle of its own trust domain (FD-02: bundles are never merged).
func (s *ServerTLS) verifyPeer(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("endpoints: client certificate: %w", err)
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return fmt.Errorf("endpoints: client certificate: %w", err)
	}
	if !id.MemberOf(s.c.TrustDomain) && !slices.Contains(s.c.AdminIDs, id) {
		return fmt.Errorf("endpoints: unexpected trust domain in ID %q", id)
	}
	_, _, err = x509svid.ParseAndVerify(raw, bundleSource(s.c.Roots), x509svid.WithTime(s.c.Clock()))
	return err
}

// bundleSource adapts a roots lookup to go-spiffe's bundle source.
type bundleSource func(ctx context.Context, td spiffeid.TrustDomain) ([]*x509.Certificate, error)

func (f bundleSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	roots, err := f(ctx, td)
	if err != nil {
		return nil, err
	}
	return x509bundle.FromX509Authorities(td, roots), nil
}
