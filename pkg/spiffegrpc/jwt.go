package spiffegrpc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// JWTLeeway is the clock skew tolerated on exp, nbf and iat of JWT-SVIDs.
const JWTLeeway = 30 * time.Second

// maxTokenLen bounds the size of a bearer token we look at.
const maxTokenLen = 16 << 10

// JW-03: the JWT-SVID algorithms; none, HS*, EdDSA and anything else are refused.
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512,
}

// JWTAuth authenticates gRPC callers by a JWT-SVID in the "authorization:
// Bearer <token>" metadata and authorizes them by SPIFFE ID.
//
// Tokens are validated locally against the jwtbundle.Source, with no round
// trip per call, following the JWT-SVID specification more strictly than
// go-spiffe's jwtsvid.ParseAndValidate: JWS compact serialization only
// (JW-01); a JOSE header with only alg, kid and typ, without duplicate
// names (JW-02); alg in the JWT-SVID allowlist, checked first (JW-03,
// JW-04); typ JWT or JOSE if present (JW-05); kid required (JW-10); sub a
// SPIFFE ID under the strict parser, with a path (JW-06); the key looked up
// by kid only among the jwt-svid authorities of the bundle of sub's trust
// domain (JW-11, JW-12); the signature checked before any other claim
// (JW-09); exp required and not past, and nbf/iat not in the future, within
// JWTLeeway (JW-08); aud present and containing the expected audience
// (JW-07), and with no other value under WithSingleAudience. A token seen
// before is served from a bounded cache after re-checking its expiry and
// that its key is still in the bundle (see WithJWTCacheSize).
//
// Refusals are UNAUTHENTICATED, or PERMISSION_DENIED when the Authorizer
// refuses a valid identity; they are counted in grpc_jwt_auth_* and logged
// without the token. A JWTAuth is safe for concurrent use.
type JWTAuth struct {
	bundles   jwtbundle.Source
	audience  string
	authorize Authorizer
	cfg       config
	cache     *tokenCache
}

// NewJWTAuth returns a JWTAuth that accepts JWT-SVIDs for audience (usually
// the server's own SPIFFE ID) validated with bundles, and authorizes them
// with authorize. Options: WithLogger, WithMetrics (grpc_jwt_auth_*),
// WithClock, WithJWTCacheSize, WithSingleAudience.
func NewJWTAuth(bundles jwtbundle.Source, audience string, authorize Authorizer, opts ...Option) (*JWTAuth, error) {
	switch {
	case bundles == nil:
		return nil, errors.New("spiffegrpc: nil JWT bundle source")
	case audience == "":
		return nil, errors.New("spiffegrpc: empty audience")
	case authorize == nil:
		return nil, errors.New("spiffegrpc: nil authorizer")
	}
	a := &JWTAuth{bundles: bundles, audience: audience, authorize: authorize, cfg: newConfig(opts)}
	if a.cfg.jwtCacheSize > 0 {
		a.cache = &tokenCache{max: a.cfg.jwtCacheSize, m: make(map[string]cachedToken)}
	}
	return a, nil
}

// Validate validates token as a JWT-SVID for the audience of a and returns
// its SPIFFE ID. A failure is an *AuthError; its text never contains the
// token. Validate does not apply the Authorizer.
func (a *JWTAuth) Validate(token string) (spiffeid.ID, error) {
	id, err := a.validate(token, a.cfg.clock())
	if err != nil {
		return spiffeid.ID{}, err
	}
	return id, nil
}

// UnaryServerInterceptor authenticates and authorizes unary calls.
func (a *JWTAuth) UnaryServerInterceptor() grpc.UnaryServerInterceptor { return unaryInterceptor(a) }

// StreamServerInterceptor authenticates and authorizes streaming calls.
func (a *JWTAuth) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return streamInterceptor(a)
}

// ServerOptions returns both interceptors, chained after any given before
// them. Pair them with transport credentials that protect the token, such
// as grpccredentials.TLSServerCredentials or MTLSAuth.
func (a *JWTAuth) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
	}
}

func (a *JWTAuth) authConfig() *config    { return &a.cfg }
func (a *JWTAuth) kind() authKind         { return kindJWT }
func (a *JWTAuth) authorizer() Authorizer { return a.authorize }

func (a *JWTAuth) authenticate(ctx context.Context, _ string) (spiffeid.ID, *AuthError) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	switch {
	case len(vals) == 0:
		return spiffeid.ID{}, authErr(ReasonMissingToken, "no authorization metadata")
	case len(vals) > 1:
		return spiffeid.ID{}, authErr(ReasonMalformed, "more than one authorization value")
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return spiffeid.ID{}, authErr(ReasonMalformed, "authorization is not a bearer token")
	}
	if token == "" {
		return spiffeid.ID{}, authErr(ReasonMissingToken, "empty bearer token")
	}
	return a.validate(token, a.cfg.clock())
}

// validate returns the SPIFFE ID of a valid token or the refusal, with the
// ID claimed by sub when it could be read.
func (a *JWTAuth) validate(token string, now time.Time) (spiffeid.ID, *AuthError) {
	if id, ok := a.cache.lookup(token, now, a.bundles); ok {
		return id, nil
	}
	if len(token) > maxTokenLen {
		return spiffeid.ID{}, authErr(ReasonMalformed, "token longer than %d bytes", maxTokenLen)
	}
	// JW-01: JWS compact serialization, three base64url parts.
	h, rest, ok1 := strings.Cut(token, ".")
	_, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return spiffeid.ID{}, authErr(ReasonMalformed, "token is not in JWS compact serialization")
	}
	hdrJSON, err := base64.RawURLEncoding.Strict().DecodeString(h)
	if err != nil {
		return spiffeid.ID{}, authErr(ReasonMalformed, "JOSE header is not base64url")
	}
	hdr, err := parseObject(hdrJSON)
	if err != nil {
		return spiffeid.ID{}, authErr(ReasonMalformed, "JOSE header: %w", err)
	}
	// JW-03, JW-04: alg first.
	alg, err := stringMember(hdr, "alg")
	if err != nil {
		return spiffeid.ID{}, authErr(ReasonMalformed, "JOSE header: %w", err)
	}
	if !algAllowed(alg) {
		return spiffeid.ID{}, authErr(ReasonMalformed, "alg %q is not allowed for JWT-SVIDs", truncate(alg))
	}
	// JW-02: no header other than alg, kid, typ.
	for name := range hdr {
		if name != "alg" && name != "kid" && name != "typ" {
			return spiffeid.ID{}, authErr(ReasonMalformed, "JOSE header %q is not allowed for JWT-SVIDs", truncate(name))
		}
	}
	// JW-05
	if _, present := hdr["typ"]; present {
		typ, err := stringMember(hdr, "typ")
		if err != nil || (typ != "JWT" && typ != "JOSE") {
			return spiffeid.ID{}, authErr(ReasonMalformed, "typ must be JWT or JOSE")
		}
	}
	// JW-10: kid is required.
	kid, err := stringMember(hdr, "kid")
	if err != nil || kid == "" {
		return spiffeid.ID{}, authErr(ReasonMalformed, "JOSE header has no kid")
	}
	jws, err := jose.ParseSignedCompact(token, jwtAlgorithms)
	if err != nil {
		return spiffeid.ID{}, authErr(ReasonMalformed, "token is not a valid JWS")
	}
	claims, err := parseObject(jws.UnsafePayloadWithoutVerification())
	if err != nil {
		return spiffeid.ID{}, authErr(ReasonMalformed, "claims: %w", err)
	}
	// JW-06: sub is a SPIFFE ID (strict parser); the key is looked up in the
	// bundle of its trust domain only (JW-12).
	sub, err := stringMember(claims, "sub")
	if err != nil {
		return spiffeid.ID{}, authErr(ReasonMalformed, "claims: %w", err)
	}
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return spiffeid.ID{}, authErr(ReasonMalformed, "sub is not a SPIFFE ID: %w", err)
	}
	if id.Path() == "" {
		return id, authErr(ReasonMalformed, "sub %s has no path", id)
	}
	bundle, err := a.bundles.GetJWTBundleForTrustDomain(id.TrustDomain())
	if err != nil {
		return id, authErr(ReasonWrongTrustDomain, "no JWT bundle for trust domain %q", id.TrustDomain())
	}
	key, ok := bundle.FindJWTAuthority(kid) // JW-11: jwt-svid keys only
	if !ok {
		return id, authErr(ReasonUnknownKey, "no JWT authority %q in the bundle of %q", truncate(kid), id.TrustDomain())
	}
	// JW-09: signature before the other claims.
	if _, err := jws.Verify(key); err != nil {
		return id, authErr(ReasonBadSignature, "signature does not verify with JWT authority %q of %q", truncate(kid), id.TrustDomain())
	}
	// JW-08: exp is required; exp, nbf and iat are checked with a leeway.
	exp, err := numericDate(claims, "exp")
	switch {
	case err != nil:
		return id, authErr(ReasonMalformed, "claims: %w", err)
	case exp == nil:
		return id, authErr(ReasonMalformed, "token has no exp claim")
	case now.After(exp.Add(JWTLeeway)):
		return id, authErr(ReasonExpired, "token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	for _, name := range []string{"nbf", "iat"} {
		t, err := numericDate(claims, name)
		switch {
		case err != nil:
			return id, authErr(ReasonMalformed, "claims: %w", err)
		case t != nil && t.After(now.Add(JWTLeeway)):
			return id, authErr(ReasonExpired, "token not valid yet (%s %s)", name, t.UTC().Format(time.RFC3339))
		}
	}
	// JW-07: aud present, containing ours.
	var aud jwt.Audience
	if raw, ok := claims["aud"]; ok {
		if err := aud.UnmarshalJSON(raw); err != nil {
			return id, authErr(ReasonMalformed, "aud is not a string or an array of strings")
		}
	}
	switch {
	case len(aud) == 0:
		return id, authErr(ReasonWrongAudience, "token has no aud claim")
	case !aud.Contains(a.audience):
		return id, authErr(ReasonWrongAudience, "audience %q not in token aud", a.audience)
	case a.cfg.singleAudience && len(aud) > 1:
		return id, authErr(ReasonWrongAudience, "token has %d audiences, one expected", len(aud))
	}
	a.cache.store(token, cachedToken{id: id, kid: kid, key: key, exp: *exp}, now)
	return id, nil
}

func algAllowed(alg string) bool {
	for _, a := range jwtAlgorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// parseObject decodes a JSON object, refusing duplicate member names (which
// parsers resolve differently) and trailing data.
func parseObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	out := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errors.New("invalid JSON")
		}
		name, _ := t.(string)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("duplicate member %q", truncate(name))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("invalid JSON")
		}
		out[name] = v
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errors.New("invalid JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after JSON object")
	}
	return out, nil
}

func stringMember(obj map[string]json.RawMessage, name string) (string, error) {
	raw, ok := obj[name]
	if !ok {
		return "", fmt.Errorf("no %s", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", name)
	}
	return s, nil
}

func numericDate(obj map[string]json.RawMessage, name string) (*time.Time, error) {
	raw, ok := obj[name]
	if !ok {
		return nil, nil
	}
	var d jwt.NumericDate
	if err := d.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("%s is not a number", name)
	}
	t := d.Time()
	return &t, nil
}

// truncate keeps attacker-chosen strings short in errors and logs.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// tokenCache remembers validated tokens. A hit is re-checked for expiry and
// for its key still being the bundle's authority for kid; anything else
// about a token cannot change.
type tokenCache struct {
	mu  sync.Mutex
	max int
	m   map[string]cachedToken
}

type cachedToken struct {
	id  spiffeid.ID
	kid string
	key crypto.PublicKey
	exp time.Time
}

func (c *tokenCache) lookup(token string, now time.Time, bundles jwtbundle.Source) (spiffeid.ID, bool) {
	if c == nil {
		return spiffeid.ID{}, false
	}
	c.mu.Lock()
	e, ok := c.m[token]
	c.mu.Unlock()
	if !ok {
		return spiffeid.ID{}, false
	}
	if now.After(e.exp.Add(JWTLeeway)) || !keyStillTrusted(bundles, e) {
		c.mu.Lock()
		delete(c.m, token)
		c.mu.Unlock()
		return spiffeid.ID{}, false
	}
	return e.id, true
}

func keyStillTrusted(bundles jwtbundle.Source, e cachedToken) bool {
	b, err := bundles.GetJWTBundleForTrustDomain(e.id.TrustDomain())
	if err != nil {
		return false
	}
	k, ok := b.FindJWTAuthority(e.kid)
	if !ok {
		return false
	}
	return sameKey(k, e.key)
}

// sameKey compares public keys, by pointer first (the usual case: the same
// bundle), then by value.
func sameKey(a, b crypto.PublicKey) bool {
	switch ka := a.(type) {
	case *ecdsa.PublicKey:
		if kb, ok := b.(*ecdsa.PublicKey); ok && ka == kb {
			return true
		}
	case *rsa.PublicKey:
		if kb, ok := b.(*rsa.PublicKey); ok && ka == kb {
			return true
		}
	}
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

func (c *tokenCache) store(token string, e cachedToken, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for t, old := range c.m {
			if now.After(old.exp.Add(JWTLeeway)) {
				delete(c.m, t)
			}
		}
		// Still full: drop arbitrary entries (map order) down to 3/4.
		for t := range c.m {
			if len(c.m) < c.max*3/4+1 {
				break
			}
			delete(c.m, t)
		}
	}
	c.m[token] = e
}
