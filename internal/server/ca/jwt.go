package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// JWTSVIDParams is what a JWT-SVID says; the caller takes SPIFFEID and TTL
// from the registration entry and Audience from the request.
type JWTSVIDParams struct {
	SPIFFEID spiffeid.ID
	// Audience must hold at least one non-empty value; empty values are dropped.
	Audience []string
	// TTL 0 means Config.JWTSVIDTTL; the lifetime is capped at the key's expiry.
	TTL time.Duration
}

// joseSigner signs JWT-SVIDs with one key; go-jose signers are safe for
// concurrent use.
type joseSigner struct {
	signer jose.Signer
}

// SignJWTSVID signs a JWT-SVID with the active JWT key, in JWS compact
// serialization (JWT-SVID §1) with only the alg, kid and typ=JWT headers
// (§2), and the claims sub, aud (always an array), exp and iat (§3), plus iss
// when Config.JWTIssuer is set. alg is ES256 for P-256 keys, ES384 for P-384
// and RS256 for RSA. It returns ErrInvalidParams for an ID the CA would not
// issue (see SignX509SVID) or an empty audience, and ErrNoActiveAuthority
// before Init.
func (c *CA) SignJWTSVID(_ context.Context, p JWTSVIDParams) (string, error) {
	if err := c.checkID(p.SPIFFEID); err != nil {
		return "", err
	}
	aud := make([]string, 0, len(p.Audience))
	for _, a := range p.Audience {
		if a != "" {
			aud = append(aud, a)
		}
	}
	if len(aud) == 0 {
		return "", fmt.Errorf("%w: audience is required", ErrInvalidParams)
	}
	key := c.signJWT.Load()
	if key == nil {
		return "", fmt.Errorf("%w: JWT key is not available for signing", ErrNoActiveAuthority)
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = c.c.JWTSVIDTTL
	}
	now := c.now()
	exp := now.Add(ttl)
	if exp.After(key.notAfter) {
		exp = key.notAfter
	}
	claims := map[string]any{
		"sub": p.SPIFFEID.String(),
		"aud": aud,
		"exp": jwt.NewNumericDate(exp),
		"iat": jwt.NewNumericDate(now),
	}
	if c.c.JWTIssuer != "" {
		claims["iss"] = c.c.JWTIssuer
	}
	token, err := jwt.Signed(key.jose.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("ca: sign JWT-SVID: %w", err)
	}
	return token, nil
}

func newJoseSigner(signer crypto.Signer, kid string) (joseSigner, error) {
	alg, err := joseAlgorithm(signer.Public())
	if err != nil {
		return joseSigner{}, err
	}
	s, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: cryptosigner.Opaque(signer), KeyID: kid}},
		new(jose.SignerOptions).WithType("JWT"),
	)
	if err != nil {
		return joseSigner{}, fmt.Errorf("ca: JWT signer: %w", err)
	}
	return joseSigner{signer: s}, nil
}

// joseAlgorithm is the JWS alg for a key, as SPIRE chooses it.
func joseAlgorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
	case *rsa.PublicKey:
		if k.Size() >= 256 {
			return jose.RS256, nil
		}
	}
	return "", fmt.Errorf("ca: no JWT algorithm for key type %T", pub)
}

// newKeyID returns a 32-character random alphanumeric key ID, the form
// SPIRE uses, drawn without modulo bias.
func newKeyID() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	out := make([]byte, 0, 32)
	buf := make([]byte, 64)
	for len(out) < 32 {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("ca: key ID: %w", err)
		}
		for _, b := range buf {
			if int(b) < 256-256%len(alphabet) && len(out) < 32 {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}
