package spiffegrpc

import (
	"log/slog"
	"time"
)

// Option configures MTLSAuth, JWTAuth and JWTCredentials. Options that do
// not concern the value being built are ignored. Options can only be made
// by the functions of this package.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	logger         *slog.Logger
	metrics        *Metrics
	clock          func() time.Time
	jwtCacheSize   int
	singleAudience bool
}

// defaultJWTCacheSize bounds the validated-token cache of a JWTAuth.
const defaultJWTCacheSize = 1024

func newConfig(opts []Option) config {
	c := config{jwtCacheSize: defaultJWTCacheSize}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	return c
}

// WithLogger sets the logger for refusals (warn level, message "Auth
// refused") and for JWT-SVID refresh failures. The default discards logs.
// Tokens and keys are never logged.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithMetrics sets where authentication attempts and failures are counted
// (see NewMetrics). The default counts nothing.
func WithMetrics(m *Metrics) Option {
	return optionFunc(func(c *config) { c.metrics = m })
}

// WithClock sets the clock used for every validity decision: X509-SVID
// expiry (at the handshake and on each RPC), JWT-SVID exp/nbf/iat, and
// JWT-SVID refresh. The default is time.Now.
func WithClock(clock func() time.Time) Option {
	return optionFunc(func(c *config) { c.clock = clock })
}

// WithJWTCacheSize sets how many validated JWT-SVIDs a JWTAuth remembers so
// that a token seen again costs a map lookup, an expiry check and a bundle
// lookup instead of a signature verification. 0 disables the cache; the
// default is 1024. Extension: go-spiffe validates every time.
func WithJWTCacheSize(n int) Option {
	return optionFunc(func(c *config) { c.jwtCacheSize = max(n, 0) })
}

// WithSingleAudience makes a JWTAuth refuse tokens whose aud claim has more
// than one value, the JWT-SVID specification's recommendation (§3.2) against
// replay of one token at several services. The default accepts any aud that
// contains the expected audience, as SPIRE does.
func WithSingleAudience() Option {
	return optionFunc(func(c *config) { c.singleAudience = true })
}
