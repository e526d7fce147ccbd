package sync

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
)

// roundRobin spreads agents over every address the server name resolves to
// (HA servers behind one DNS name), as SPIRE's agent does.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// connectParams bound gRPC's own reconnection delay so a server that comes
// back is reached within seconds; the sync loops add their own backoff.
var connectParams = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  250 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   5 * time.Second,
	},
	MinConnectTimeout: 5 * time.Second,
}

// svidSource hands the current agent SVID to each TLS handshake, so a new
// connection after renewal presents the new certificate.
type svidSource struct{ c *Client }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) {
	cur := s.c.creds.Load()
	if cur == nil {
		return nil, errors.New("no agent SVID")
	}
	return cur.svid, nil
}

// bundleSource hands the current bundle of the agent's trust domain to each
// TLS handshake, so CA rotations learnt from the server are trusted.
type bundleSource struct{ c *Client }

func (s bundleSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b := s.c.bundle.Load()
	if b == nil {
		return nil, errors.New("no trust bundle")
	}
	return b.GetX509BundleForTrustDomain(td)
}

// dial returns a lazily connecting client for the server with tlsConf.
func (c *Client) dial(tlsConf *tls.Config) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(c.cfg.ServerAddress,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		grpc.WithConnectParams(connectParams),
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithDisableServiceConfig(),
	)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("dial server: %w", err))
	}
	return cc, nil
}

// mtlsConfig authenticates with the current agent SVID and accepts only
// the server's SPIFFE ID chained to the current bundle.
func (c *Client) mtlsConfig() *tls.Config {
	return tlsconfig.MTLSClientConfig(svidSource{c}, bundleSource{c}, tlsconfig.AuthorizeID(c.serverID))
}

// bootstrapConfig is the TLS of attestation: no client certificate; the
// server must present its SPIFFE ID chained to the current bundle, or, with
// no bundle (insecure_bootstrap), merely claim its SPIFFE ID.
func (c *Client) bootstrapConfig() *tls.Config {
	if c.bundle.Load() != nil {
		return tlsconfig.TLSClientConfig(bundleSource{c}, tlsconfig.AuthorizeID(c.serverID))
	}
	serverID := c.serverID
	log := c.log
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// insecure_bootstrap: the chain cannot be verified before the agent
		// has a bundle; only the server's claimed SPIFFE ID is checked.
		InsecureSkipVerify: true, //nolint:gosec // see above
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			log.Warn("Insecure bootstrap enabled; skipping server certificate verification")
			if len(raw) == 0 {
				return errors.New("server presented no certificate")
			}
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			id, err := x509svid.IDFromCert(cert)
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if id != serverID {
				return fmt.Errorf("expected server SPIFFE ID %q; got %q", serverID, id)
			}
			return nil
		},
	}
}
