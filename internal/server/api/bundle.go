package api

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"math"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// ProtoFromBundle converts a stored bundle; the trust domain becomes its
// name ("example.org").
func ProtoFromBundle(b *datastore.Bundle) (*types.Bundle, error) {
	if b == nil {
		return nil, Publicf("no bundle provided")
	}
	td, err := spiffeid.TrustDomainFromString(b.TrustDomain)
	if err != nil {
		return nil, wrapPublic("invalid trust domain id", err)
	}
	out := &types.Bundle{
		TrustDomain:    td.Name(),
		RefreshHint:    b.RefreshHint,
		SequenceNumber: uint64(max(b.SequenceNumber, 0)),
	}
	for _, a := range b.X509Authorities {
		out.X509Authorities = append(out.X509Authorities, &types.X509Certificate{Asn1: a.Certificate, Tainted: a.Tainted})
	}
	for _, k := range b.JWTAuthorities {
		out.JwtAuthorities = append(out.JwtAuthorities, &types.JWTKey{
			PublicKey: k.PublicKey, KeyId: k.KeyID, ExpiresAt: k.ExpiresAt, Tainted: k.Tainted,
		})
	}
	return out, nil
}

// BundleFromProto validates a bundle message and converts it. The trust
// domain may be a name or an ID; every X.509 authority must parse and every
// JWT authority needs a PKIX key and a key ID. Taint flags in the request
// are ignored, as in SPIRE: only the local authority API taints.
func BundleFromProto(b *types.Bundle) (*datastore.Bundle, error) {
	if b == nil {
		return nil, Publicf("no bundle provided")
	}
	td, err := TrustDomainFromString(b.TrustDomain)
	if err != nil {
		return nil, wrapPublic("invalid trust domain", err)
	}
	x509s, err := X509AuthoritiesFromProto(b.X509Authorities)
	if err != nil {
		return nil, wrapPublic("unable to parse X.509 authority", err)
	}
	jwts, err := JWTAuthoritiesFromProto(b.JwtAuthorities)
	if err != nil {
		return nil, wrapPublic("unable to parse JWT authority", err)
	}
	return &datastore.Bundle{
		TrustDomain:     td.IDString(),
		X509Authorities: x509s,
		JWTAuthorities:  jwts,
		RefreshHint:     b.RefreshHint,
		SequenceNumber:  int64(min(b.SequenceNumber, math.MaxInt64)), //nolint:gosec // capped above
	}, nil
}

// X509AuthoritiesFromProto parses X.509 authorities; a message holding
// several concatenated DER certificates gives one authority per certificate.
func X509AuthoritiesFromProto(in []*types.X509Certificate) ([]datastore.X509Authority, error) {
	var out []datastore.X509Authority
	for _, c := range in {
		if c == nil {
			return nil, Publicf("missing X.509 authority")
		}
		certs, err := x509.ParseCertificates(c.Asn1)
		if err != nil {
			return nil, &PublicError{Msg: err.Error(), Err: err}
		}
		if len(certs) == 0 {
			return nil, Publicf("no certificate in X.509 authority")
		}
		for _, cert := range certs {
			out = append(out, datastore.X509Authority{Certificate: cert.Raw})
		}
	}
	return out, nil
}

// JWTAuthoritiesFromProto parses JWT authorities (PKIX public key and key ID).
func JWTAuthoritiesFromProto(in []*types.JWTKey) ([]datastore.JWTAuthority, error) {
	var out []datastore.JWTAuthority
	for _, k := range in {
		if k == nil {
			return nil, Publicf("missing JWT authority")
		}
		if _, err := x509.ParsePKIXPublicKey(k.PublicKey); err != nil {
			return nil, &PublicError{Msg: err.Error(), Err: err}
		}
		if k.KeyId == "" {
			return nil, Publicf("missing key ID")
		}
		out = append(out, datastore.JWTAuthority{KeyID: k.KeyId, PublicKey: k.PublicKey, ExpiresAt: k.ExpiresAt})
	}
	return out, nil
}

// ApplyBundleMask clears the fields of b that mask leaves out; nil keeps all.
func ApplyBundleMask(b *types.Bundle, mask *types.BundleMask) {
	if mask == nil {
		return
	}
	if !mask.RefreshHint {
		b.RefreshHint = 0
	}
	if !mask.SequenceNumber {
		b.SequenceNumber = 0
	}
	if !mask.X509Authorities {
		b.X509Authorities = nil
	}
	if !mask.JwtAuthorities {
		b.JwtAuthorities = nil
	}
}

// HashBytes is the hex SHA-256 of b, for logging CSRs and tokens without
// their content; "" for empty input.
func HashBytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
