package spiffegrpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// refusedConnCloseDelay is how long a connection whose client identity was
// refused stays open, so the refusal's status reaches the client before the
// connection closes and the client redials with its current SVID.
const refusedConnCloseDelay = time.Second

// MTLSAuth authenticates gRPC callers by their X509-SVID (mutual TLS) and
// authorizes them by SPIFFE ID.
//
// Its server credentials present the current SVID of the x509svid.Source
// (read on every handshake, so rotation needs no restart), ask the client
// for a certificate and verify the client's chain right after the
// handshake against the current bundle of the SPIFFE ID's trust domain
// (never another domain's: FD-02), with the X509-SVID rules of X5-13: one
// URI SAN, a non-root path, cA=false, no keyCertSign or cRLSign. TLS
// session tickets are disabled, so no connection resumes a session that
// skipped verification against the current bundle (T10). Its interceptors
// refuse each call of a connection whose client failed verification with
// UNAUTHENTICATED, and re-check on every call that the chain has not
// expired and its root is still in the bundle (Extension: a bundle that
// drops a CA cuts off established connections too), then ask the
// Authorizer (PERMISSION_DENIED if it refuses). A connection whose client is
// refused is closed shortly after, so the client redials with its current
// SVID. Use ServerOptions, or ServerCredentials together with both
// interceptors: the credentials alone accept any client.
//
// An MTLSAuth is safe for concurrent use.
type MTLSAuth struct {
	bundles   x509bundle.Source
	authorize Authorizer
	cfg       config
	creds     credentials.TransportCredentials
}

// NewMTLSAuth returns an MTLSAuth that serves svids, verifies clients with
// bundles and authorizes them with authorize. Options: WithLogger,
// WithMetrics (grpc_auth_*), WithClock.
func NewMTLSAuth(svids x509svid.Source, bundles x509bundle.Source, authorize Authorizer, opts ...Option) (*MTLSAuth, error) {
	switch {
	case svids == nil:
		return nil, errors.New("spiffegrpc: nil X509-SVID source")
	case bundles == nil:
		return nil, errors.New("spiffegrpc: nil X.509 bundle source")
	case authorize == nil:
		return nil, errors.New("spiffegrpc: nil authorizer")
	}
	a := &MTLSAuth{bundles: bundles, authorize: authorize, cfg: newConfig(opts)}
	tc := tlsconfig.TLSServerConfig(svids)
	// Verification happens in ServerHandshake below, so that a refused client
	// gets a gRPC status (and the refusal a method label) instead of a
	// handshake failure.
	tc.ClientAuth = tls.RequestClientCert
	tc.SessionTicketsDisabled = true // T10, as SPIRE's TCP endpoint
	tc.Time = a.cfg.clock
	a.creds = &serverCredentials{TransportCredentials: credentials.NewTLS(tc), auth: a}
	return a, nil
}

// ServerCredentials returns the TLS transport credentials of the server.
func (a *MTLSAuth) ServerCredentials() credentials.TransportCredentials { return a.creds }

// UnaryServerInterceptor authenticates and authorizes unary calls.
func (a *MTLSAuth) UnaryServerInterceptor() grpc.UnaryServerInterceptor { return unaryInterceptor(a) }

// StreamServerInterceptor authenticates and authorizes streaming calls.
func (a *MTLSAuth) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return streamInterceptor(a)
}

// ServerOptions returns the credentials and both interceptors, chained
// after any interceptors given before them.
func (a *MTLSAuth) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(a.creds),
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
	}
}

func (a *MTLSAuth) authConfig() *config    { return &a.cfg }
func (a *MTLSAuth) kind() authKind         { return kindX509 }
func (a *MTLSAuth) authorizer() Authorizer { return a.authorize }

func (a *MTLSAuth) authenticate(ctx context.Context, _ string) (spiffeid.ID, *AuthError) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, authErr(ReasonNoPeerCert, "no peer in context")
	}
	info, ok := p.AuthInfo.(*x509AuthInfo)
	if !ok || info.auth != a {
		return spiffeid.ID{}, authErr(ReasonNoPeerCert, "connection not made with this server's SPIFFE credentials")
	}
	if info.err != nil {
		info.closeSoon()
		return info.id, info.err
	}
	// Per-call re-check (cheap): the handshake-time verification still holds
	// under the current clock and bundle.
	if now := a.cfg.clock(); now.After(info.notAfter) {
		info.closeSoon()
		return info.id, authErr(ReasonExpired, "X509-SVID chain expired at %s", info.notAfter.UTC().Format(time.RFC3339))
	}
	b, err := a.bundles.GetX509BundleForTrustDomain(info.id.TrustDomain())
	if err != nil || !b.HasX509Authority(info.root) {
		info.closeSoon()
		return info.id, authErr(ReasonUntrusted, "X509-SVID chain root is no longer in the bundle of %q", info.id.TrustDomain())
	}
	return info.id, nil
}

// verify checks a client chain as X509-SVID (§5 of the X509-SVID spec) at
// now. It returns the ID it could read even when verification fails.
func (a *MTLSAuth) verify(certs []*x509.Certificate, now time.Time) (spiffeid.ID, []*x509.Certificate, *AuthError) {
	if len(certs) == 0 {
		return spiffeid.ID{}, nil, authErr(ReasonNoPeerCert, "no client certificate")
	}
	leaf := certs[0]
	id, err := x509svid.IDFromCert(leaf) // X5-02: exactly one URI SAN, strict ID parse
	if err != nil {
		return spiffeid.ID{}, nil, authErr(ReasonMalformed, "client certificate is not an X509-SVID: %w", err)
	}
	switch {
	case leaf.IsCA: // X5-06, X5-13
		return id, nil, authErr(ReasonMalformed, "CA certificate presented as X509-SVID")
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0: // X5-13
		return id, nil, authErr(ReasonMalformed, "X509-SVID has keyCertSign or cRLSign key usage")
	case id.Path() == "": // X5-03
		return id, nil, authErr(ReasonMalformed, "X509-SVID SPIFFE ID %s has no path", id)
	case now.Before(leaf.NotBefore):
		return id, nil, authErr(ReasonExpired, "X509-SVID not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return id, nil, authErr(ReasonExpired, "X509-SVID expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := a.bundles.GetX509BundleForTrustDomain(id.TrustDomain()); err != nil {
		return id, nil, authErr(ReasonWrongTrustDomain, "no X.509 bundle for trust domain %q", id.TrustDomain())
	}
	// X5-12: RFC 5280 path validation (expiry, chain, basic constraints,
	// pathLen) against the bundle of the leaf's own trust domain (FD-02).
	_, chains, err := x509svid.Verify(certs, a.bundles, x509svid.WithTime(now))
	if err != nil {
		if cie, ok := errors.AsType[x509.CertificateInvalidError](err); ok && cie.Reason == x509.Expired {
			return id, nil, authErr(ReasonExpired, "%w", err)
		}
		return id, nil, authErr(ReasonUntrusted, "%w", err)
	}
	return id, chains[0], nil
}

// serverCredentials wraps the TLS credentials to verify the client chain
// once per connection and keep the result in the AuthInfo.
type serverCredentials struct {
	credentials.TransportCredentials
	auth *MTLSAuth
}

func (c *serverCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("spiffegrpc: MTLSAuth credentials are server credentials")
}

func (c *serverCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	tlsInfo, ok := ai.(credentials.TLSInfo)
	if !ok {
		_ = conn.Close()
		return nil, nil, errors.New("spiffegrpc: unexpected TLS auth info")
	}
	info := c.auth.newAuthInfo(tlsInfo, conn)
	return conn, info, nil
}

// newAuthInfo verifies the client chain of a finished handshake, resumed or
// not (T10), and keeps the outcome for the calls on the connection.
func (a *MTLSAuth) newAuthInfo(tlsInfo credentials.TLSInfo, conn net.Conn) *x509AuthInfo {
	info := &x509AuthInfo{TLSInfo: tlsInfo, auth: a, conn: conn}
	var chain []*x509.Certificate
	info.id, chain, info.err = a.verify(tlsInfo.State.PeerCertificates, a.cfg.clock())
	if info.err == nil {
		info.root = chain[len(chain)-1]
		info.notAfter = chain[0].NotAfter
		for _, cert := range chain[1:] {
			if cert.NotAfter.Before(info.notAfter) {
				info.notAfter = cert.NotAfter
			}
		}
	}
	return info
}

func (c *serverCredentials) Clone() credentials.TransportCredentials {
	return &serverCredentials{TransportCredentials: c.TransportCredentials.Clone(), auth: c.auth}
}

// x509AuthInfo is the AuthInfo of a connection made with MTLSAuth's
// credentials: the TLS state plus the outcome of verifying the client.
type x509AuthInfo struct {
	credentials.TLSInfo
	auth     *MTLSAuth
	conn     net.Conn
	id       spiffeid.ID
	root     *x509.Certificate
	notAfter time.Time
	err      *AuthError

	closeOnce sync.Once
}

func (i *x509AuthInfo) closeSoon() {
	i.closeOnce.Do(func() {
		time.AfterFunc(refusedConnCloseDelay, func() { _ = i.conn.Close() })
	})
}
