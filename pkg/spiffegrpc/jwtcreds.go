package spiffegrpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc/credentials"
)

// jwtRetryDelay spaces fetch attempts while a cached JWT-SVID is still valid
// but refreshing it fails.
const jwtRetryDelay = time.Second

// JWTCredentials is a gRPC per-RPC credential that sends a JWT-SVID for one
// audience as "authorization: Bearer <token>". It fetches the token from a
// jwtsvid.Source (typically a workloadapi.JWTSource) on first use and again
// once half of the token's remaining lifetime at fetch time has passed; in
// between every call reuses the cached token. If a refresh fails while the
// cached token is still valid, the cached token is sent, the failure is
// logged, and the refresh is retried at most once a second (Extension: the
// service keeps working through a short agent outage). Only one fetch runs
// at a time. It requires transport security (TLS, or local credentials on a
// unix socket). A JWTCredentials is safe for concurrent use.
type JWTCredentials struct {
	source   jwtsvid.Source
	audience string
	cfg      config
	sem      chan struct{}

	mu      sync.Mutex
	token   string
	expiry  time.Time
	refresh time.Time
}

var _ credentials.PerRPCCredentials = (*JWTCredentials)(nil)

// NewJWTCredentials returns credentials that send JWT-SVIDs from source for
// audience (usually the server's SPIFFE ID). Options: WithLogger, WithClock.
func NewJWTCredentials(source jwtsvid.Source, audience string, opts ...Option) (*JWTCredentials, error) {
	switch {
	case source == nil:
		return nil, errors.New("spiffegrpc: nil JWT-SVID source")
	case audience == "":
		return nil, errors.New("spiffegrpc: empty audience")
	}
	return &JWTCredentials{source: source, audience: audience, cfg: newConfig(opts), sem: make(chan struct{}, 1)}, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials. It blocks
// only while a fetch is needed, until ctx is done.
func (c *JWTCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := c.Token(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: true.
func (c *JWTCredentials) RequireTransportSecurity() bool { return true }

// Token returns the current JWT-SVID, fetching a new one when needed.
func (c *JWTCredentials) Token(ctx context.Context) (string, error) {
	if tok, ok := c.cached(c.cfg.clock()); ok {
		return tok, nil
	}
	select {
	case c.sem <- struct{}{}:
	default:
		// A fetch is in flight: a still-valid token beats waiting for it.
		if tok, ok := c.valid(c.cfg.clock()); ok {
			return tok, nil
		}
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return "", fmt.Errorf("spiffegrpc: waiting for JWT-SVID: %w", ctx.Err())
		}
	}
	defer func() { <-c.sem }()
	now := c.cfg.clock()
	if tok, ok := c.cached(now); ok { // fetched by another caller meanwhile
		return tok, nil
	}
	svid, err := c.source.FetchJWTSVID(ctx, jwtsvid.Params{Audience: c.audience})
	if err == nil && !svid.Expiry.After(now) {
		err = fmt.Errorf("JWT-SVID expired at %s", svid.Expiry.UTC().Format(time.RFC3339))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.token != "" && now.Before(c.expiry) {
			c.refresh = now.Add(jwtRetryDelay)
			c.cfg.logger.WarnContext(ctx, "JWT-SVID refresh failed, using cached token for auth",
				"audience", c.audience, "expires_at", c.expiry.UTC(), "error", err.Error())
			return c.token, nil
		}
		return "", fmt.Errorf("spiffegrpc: fetch JWT-SVID for audience %q: %w", c.audience, err)
	}
	c.token = svid.Marshal()
	c.expiry = svid.Expiry
	c.refresh = now.Add(svid.Expiry.Sub(now) / 2)
	return c.token, nil
}

func (c *JWTCredentials) cached(now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && now.Before(c.refresh) && now.Before(c.expiry) {
		return c.token, true
	}
	return "", false
}

func (c *JWTCredentials) valid(now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && now.Before(c.expiry) {
		return c.token, true
	}
	return "", false
}
