package spiffegrpc

import (
	"errors"
	"fmt"
)

// Reason is why an authentication attempt failed. It is the value of the
// reason label of the failure counters and of the reason log attribute; the
// set is fixed so the label stays bounded.
type Reason string

// Reasons for refusing a call.
const (
	// ReasonNoPeerCert: the TLS peer sent no certificate, or the connection
	// was not made with MTLSAuth's credentials.
	ReasonNoPeerCert Reason = "no_peer_cert"
	// ReasonUntrusted: the X509-SVID chain does not verify against the
	// current bundle of the ID's trust domain.
	ReasonUntrusted Reason = "untrusted"
	// ReasonExpired: the SVID is outside its validity period.
	ReasonExpired Reason = "expired"
	// ReasonWrongAudience: the JWT-SVID has no aud, or not ours.
	ReasonWrongAudience Reason = "wrong_audience"
	// ReasonDenied: the identity is valid but the Authorizer refused it.
	ReasonDenied Reason = "denied"
	// ReasonMalformed: the credential is not a well-formed SVID (structure,
	// headers, alg, typ, sub, exp, CA flags, URI SANs).
	ReasonMalformed Reason = "malformed"
	// ReasonUnknownKey: no JWT authority with the token's kid in the bundle
	// of the subject's trust domain.
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonBadSignature: the JWT-SVID signature does not verify with the key.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonWrongTrustDomain: there is no bundle for the peer's trust domain.
	ReasonWrongTrustDomain Reason = "wrong_trust_domain"
	// ReasonMissingToken: the call carries no bearer token.
	ReasonMissingToken Reason = "missing_token"
)

// AuthError is the error of a refused authentication or authorization,
// returned by JWTAuth.Validate and logged for refused calls.
type AuthError struct {
	Reason Reason
	Err    error
}

// Error returns "spiffegrpc: <reason>: <detail>"; it never contains a token.
func (e *AuthError) Error() string {
	return "spiffegrpc: " + string(e.Reason) + ": " + e.Err.Error()
}

// Unwrap returns the detail error.
func (e *AuthError) Unwrap() error { return e.Err }

func authErr(r Reason, format string, args ...any) *AuthError {
	return &AuthError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// ErrDenied is wrapped by the errors of this package's Authorizers, so that
// composed policies can tell a refusal from a failure.
var ErrDenied = errors.New("permission denied")
