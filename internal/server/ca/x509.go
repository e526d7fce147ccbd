package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 5280 §4.2.1.2 method 1, as SPIRE computes Subject Key IDs
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// X509SVIDParams is what an X509-SVID says. The caller takes every field
// from the registration entry (or the agent's attested ID); the CA signs
// exactly these values and reads nothing from a CSR (threat T1).
type X509SVIDParams struct {
	SPIFFEID  spiffeid.ID
	PublicKey crypto.PublicKey
	// TTL 0 means Config.X509SVIDTTL; the lifetime is capped at the CA's NotAfter.
	TTL time.Duration
	// DNSNames become dNSName SANs in order; the first one also becomes the
	// subject CN, as SPIRE does.
	DNSNames []string
	// Subject replaces the default C=US, O=SPIRE when not empty.
	Subject pkix.Name
}

// SignX509SVID signs an X509-SVID with the active X.509 CA and returns the
// leaf followed by the intermediates up to, not including, the trust bundle
// root (nothing more when the CA is self-signed). The leaf has exactly one
// URI SAN (X509-SVID §2), cA=false, a critical key usage of digitalSignature,
// keyEncipherment and keyAgreement (SPIRE's profile; never keyCertSign or
// cRLSign), EKU serverAuth and clientAuth, and is back-dated 10 seconds.
// It returns ErrInvalidParams for an ID that is empty, outside the trust
// domain, without a path or longer than 2048 bytes, and ErrNoActiveAuthority
// before Init.
func (c *CA) SignX509SVID(_ context.Context, p X509SVIDParams) ([]*x509.Certificate, error) {
	if err := c.checkID(p.SPIFFEID); err != nil {
		return nil, err
	}
	if p.PublicKey == nil {
		return nil, fmt.Errorf("%w: public key is required", ErrInvalidParams)
	}
	for _, name := range p.DNSNames {
		if !isDNSNameASCII(name) {
			return nil, fmt.Errorf("%w: DNS name %q is not a printable ASCII name", ErrInvalidParams, name)
		}
	}
	slot := c.signX509.Load()
	if slot == nil {
		return nil, fmt.Errorf("%w: X509 CA is not available for signing", ErrNoActiveAuthority)
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = c.c.X509SVIDTTL
	}
	now := c.now()
	notBefore, notAfter := now.Add(-notBeforeCushion), now.Add(ttl)
	if notAfter.After(slot.cert.NotAfter) {
		notAfter = slot.cert.NotAfter
	}

	var subject []byte // nil: the default subject
	if len(p.Subject.ToRDNSequence()) > 0 || len(p.DNSNames) > 0 {
		name := defaultSVIDSubject()
		if len(p.Subject.ToRDNSequence()) > 0 {
			name = p.Subject
		}
		if len(p.DNSNames) > 0 {
			name.CommonName = p.DNSNames[0]
		}
		var err error
		if subject, err = marshalName(name); err != nil {
			return nil, fmt.Errorf("%w: subject: %w", ErrInvalidParams, err)
		}
	}
	leaf, err := slot.leaf.sign(leafFields{
		subject:   subject,
		publicKey: p.PublicKey,
		notBefore: notBefore,
		notAfter:  notAfter,
		id:        p.SPIFFEID,
		dnsNames:  p.DNSNames,
	})
	if err != nil {
		return nil, err
	}
	chain := make([]*x509.Certificate, 0, 1+len(slot.chain))
	chain = append(chain, leaf)
	return append(chain, slot.chain...), nil
}

// checkID applies the issuance policy for SVID IDs: a member of our trust
// domain with a non-root path (X509-SVID §3.1), at most 2048 bytes
// (SPIFFE-ID §2.3). spiffeid.ID values are valid by construction; the path
// bytes are checked again so a build with go-spiffe's charset_backcompat tag
// still refuses ':' or '@' (SPIFFE-ID §2.2).
func (c *CA) checkID(id spiffeid.ID) error {
	switch {
	case id.IsZero():
		return fmt.Errorf("%w: SPIFFE ID is empty", ErrInvalidParams)
	case !id.MemberOf(c.c.TrustDomain):
		return fmt.Errorf("%w: %q is not a member of trust domain %q", ErrInvalidParams, id, c.c.TrustDomain)
	case id.Path() == "":
		return fmt.Errorf("%w: %q has no path", ErrInvalidParams, id)
	case len(id.String()) > maxIDLength:
		return fmt.Errorf("%w: SPIFFE ID is %d bytes, more than %d", ErrInvalidParams, len(id.String()), maxIDLength)
	}
	for _, b := range []byte(id.Path()) {
		if !isPathByte(b) {
			return fmt.Errorf("%w: %q has a path character outside [a-zA-Z0-9._-]", ErrInvalidParams, id)
		}
	}
	return nil
}

func isPathByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '-' || b == '_' || b == '/'
}

func isDNSNameASCII(name string) bool {
	if name == "" {
		return false
	}
	for _, b := range []byte(name) {
		if b <= ' ' || b > '~' {
			return false
		}
	}
	return true
}

func defaultSVIDSubject() pkix.Name {
	return pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}}
}

func marshalName(n pkix.Name) ([]byte, error) {
	return asn1.Marshal(n.ToRDNSequence())
}

// newSerialNumber returns a random serial in [1, 2^128], as SPIRE does.
func newSerialNumber() (*big.Int, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("ca: serial number: %w", err)
	}
	n := new(big.Int).SetBytes(b[:])
	return n.Add(n, big.NewInt(1)), nil
}

// subjectKeyID is the SHA-1 of the subjectPublicKey bits (RFC 5280
// §4.2.1.2 method 1), SPIRE's default.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("ca: marshal public key: %w", err)
	}
	return subjectKeyIDFromSPKI(spki)
}

func subjectKeyIDFromSPKI(spki []byte) ([]byte, error) {
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, fmt.Errorf("ca: parse public key: %w", err)
	}
	h := sha1.Sum(info.PublicKey.Bytes) //nolint:gosec // see import
	return h[:], nil
}

// AuthorityIDFromSKID formats a Subject Key ID as SPIRE prints authority IDs:
// lowercase hex, no separators.
func AuthorityIDFromSKID(skid []byte) string { return hex.EncodeToString(skid) }

// caTemplate is SPIRE's X.509 CA profile: subject (with serialNumber), URI
// SAN spiffe://<td> and no path (X509-SVID §3.2), cA=true, critical key usage
// keyCertSign|cRLSign, Subject Key ID, back-dated 10 seconds.
func (c *CA) caTemplate(pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	serial, err := newSerialNumber()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	subject := c.c.Subject
	if subject.SerialNumber == "" {
		subject.SerialNumber = serial.String()
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		URIs:                  []*url.URL{c.c.TrustDomain.ID().URL()},
		NotBefore:             now.Add(-notBeforeCushion),
		NotAfter:              now.Add(c.c.CATTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
		PublicKey:             pub,
	}, nil
}

// selfSignCA creates a self-signed root for signer.
func (c *CA) selfSignCA(signer crypto.Signer, now time.Time) (*x509.Certificate, error) {
	tmpl, err := c.caTemplate(signer.Public(), now)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("ca: self-sign X509 CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse X509 CA: %w", err)
	}
	return cert, nil
}
