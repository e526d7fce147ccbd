package workloadapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// allowedJWTAlgorithms are the JWT-SVID signature algorithms (JWT-SVID
// §2.1); anything else, "none" and HS* included, fails to parse (JW-03/04).
var allowedJWTAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512,
}

// validateJWTSVID validates a JWT-SVID per the JWT-SVID spec: compact
// serialization only (JW-01), JOSE headers limited to alg, kid and typ
// (JW-02), typ JWT or JOSE (JW-05), a kid, sub a SPIFFE ID, exp present,
// the signature checked with the key of that kid in the bundle of the
// subject's trust domain only (JW-11, JW-12), then exp and aud at now.
// Error messages are SPIRE's where SPIRE has the check.
func validateJWTSVID(token, audience string, bundleFor func(spiffeid.TrustDomain) *spiffebundle.Bundle, now time.Time) (spiffeid.ID, map[string]any, error) {
	tok, err := jwt.ParseSigned(token, allowedJWTAlgorithms)
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("unable to parse JWT token: %w", err)
	}
	if len(tok.Headers) != 1 {
		return spiffeid.ID{}, nil, fmt.Errorf("expected a single token header; got %d", len(tok.Headers))
	}
	if err := checkJOSEHeader(token); err != nil {
		return spiffeid.ID{}, nil, err
	}
	keyID := tok.Headers[0].KeyID
	if keyID == "" {
		return spiffeid.ID{}, nil, errors.New("token header missing key id")
	}

	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return spiffeid.ID{}, nil, err
	}
	if claims.Subject == "" {
		return spiffeid.ID{}, nil, errors.New("token missing subject claim")
	}
	if claims.Expiry == nil {
		return spiffeid.ID{}, nil, errors.New("token missing exp claim")
	}
	id, err := spiffeid.FromString(claims.Subject)
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("token has in invalid subject claim: %w", err)
	}

	td := id.TrustDomain()
	bundle := bundleFor(td)
	if bundle == nil {
		return spiffeid.ID{}, nil, fmt.Errorf("no keys found for trust domain %q", td)
	}
	key, ok := bundle.FindJWTAuthority(keyID)
	if !ok {
		return spiffeid.ID{}, nil, fmt.Errorf("public key %q not found in trust domain %q", keyID, td)
	}
	out := make(map[string]any)
	if err := tok.Claims(key, &out); err != nil {
		return spiffeid.ID{}, nil, err
	}
	if err := claims.Validate(jwt.Expected{AnyAudience: []string{audience}, Time: now}); err != nil {
		switch {
		case errors.Is(err, jwt.ErrExpired):
			err = errors.New("token has expired")
		case errors.Is(err, jwt.ErrInvalidAudience):
			err = fmt.Errorf("expected audience in %q (audience=%q)", []string{audience}, claims.Audience)
		}
		return spiffeid.ID{}, nil, err
	}
	return id, out, nil
}

// checkJOSEHeader rejects JOSE headers other than alg, kid and typ (JW-02),
// and a typ other than JWT or JOSE (JW-05).
func checkJOSEHeader(token string) error {
	protected, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(protected)
	if err != nil {
		return fmt.Errorf("unable to parse JWT token: %w", err)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw, &header); err != nil {
		return fmt.Errorf("unable to parse JWT token: %w", err)
	}
	for name, value := range header {
		switch name {
		case "alg", "kid":
		case "typ":
			var typ string
			if err := json.Unmarshal(value, &typ); err != nil || (typ != "JWT" && typ != "JOSE") {
				return errors.New("token header type not equal to either JWT or JOSE")
			}
		default:
			return fmt.Errorf("token header %q is not allowed", name)
		}
	}
	return nil
}
