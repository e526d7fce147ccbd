package cache

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Entry is a registration entry authorized to this agent, reduced to what
// the agent needs to serve it. An Entry handed to the cache is shared with
// its readers and must not be modified afterwards.
type Entry struct {
	// ID is the entry ID; identities are ordered by it (as SPIRE orders them).
	ID       string
	SPIFFEID spiffeid.ID
	ParentID spiffeid.ID
	// Selectors are "type:value" strings, e.g. "unix:uid:1000".
	Selectors     []string
	FederatesWith []spiffeid.TrustDomain
	// Hint is the operator's hint, unique within one Workload API response.
	Hint     string
	DNSNames []string
	// RevisionNumber changes on every update of the entry; an X509-SVID
	// signed for an older revision is renewed.
	RevisionNumber int64
	// CreatedAt (unix seconds) breaks ties between entries with the same hint:
	// the oldest wins, as in SPIRE.
	CreatedAt int64
}

// EntryFromProto converts an entry of the server API (entry.v1
// GetAuthorizedEntries / SyncAuthorizedEntries) to an Entry.
func EntryFromProto(e *types.Entry) (*Entry, error) {
	if e == nil {
		return nil, wrapErr(errors.New("entry is nil"))
	}
	id, err := idFromProto(e.GetSpiffeId())
	if err != nil {
		return nil, wrapErr(fmt.Errorf("entry %q: invalid SPIFFE ID: %w", e.GetId(), err))
	}
	var parent spiffeid.ID
	if e.GetParentId() != nil {
		if parent, err = idFromProto(e.GetParentId()); err != nil {
			return nil, wrapErr(fmt.Errorf("entry %q: invalid parent ID: %w", e.GetId(), err))
		}
	}
	out := &Entry{
		ID:             e.GetId(),
		SPIFFEID:       id,
		ParentID:       parent,
		Selectors:      make([]string, 0, len(e.GetSelectors())),
		Hint:           e.GetHint(),
		DNSNames:       slices.Clone(e.GetDnsNames()),
		RevisionNumber: e.GetRevisionNumber(),
		CreatedAt:      e.GetCreatedAt(),
	}
	for _, s := range e.GetSelectors() {
		if s.GetType() == "" || strings.Contains(s.GetType(), ":") {
			return nil, wrapErr(fmt.Errorf("entry %q: invalid selector type %q", e.GetId(), s.GetType()))
		}
		out.Selectors = append(out.Selectors, s.GetType()+":"+s.GetValue())
	}
	for _, name := range e.GetFederatesWith() {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, wrapErr(fmt.Errorf("entry %q: invalid federated trust domain: %w", e.GetId(), err))
		}
		out.FederatesWith = append(out.FederatesWith, td)
	}
	return out, nil
}

func idFromProto(id *types.SPIFFEID) (spiffeid.ID, error) {
	if id == nil {
		return spiffeid.ID{}, errors.New("missing")
	}
	td, err := spiffeid.TrustDomainFromString(id.GetTrustDomain())
	if err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromPath(td, id.GetPath())
}

// equal reports whether two entries serve the same identity the same way.
func (e *Entry) equal(o *Entry) bool {
	return e.ID == o.ID &&
		e.SPIFFEID == o.SPIFFEID &&
		e.ParentID == o.ParentID &&
		e.Hint == o.Hint &&
		e.RevisionNumber == o.RevisionNumber &&
		e.CreatedAt == o.CreatedAt &&
		slices.Equal(e.Selectors, o.Selectors) &&
		slices.Equal(e.FederatesWith, o.FederatesWith) &&
		slices.Equal(e.DNSNames, o.DNSNames)
}

// X509SVID is an X509-SVID and its private key as the sync loop hands them
// to SetSVIDs.
type X509SVID struct {
	// Chain is the leaf followed by intermediates up to (not including) a
	// root of the bundle.
	Chain []*x509.Certificate
	// Key is the private key of the leaf.
	Key crypto.Signer
	// EntryRevision is the RevisionNumber of the entry the SVID was signed
	// for; a newer revision of the entry makes the SVID stale.
	EntryRevision int64
}

// SVID is an X509-SVID as the cache stores and serves it: DER encoded, with
// the intermediates shared between all SVIDs that carry them (one copy of
// each CA chain, not one per SVID). A parsed certificate takes about six
// times the memory of its DER, so only the shared intermediates stay parsed.
// SVID is immutable; the slices it returns must not be modified.
type SVID struct {
	// ID is the SPIFFE ID in the leaf's URI SAN; zero if it has none.
	ID spiffeid.ID
	// NotBefore and NotAfter are the leaf's validity period.
	NotBefore, NotAfter time.Time
	// EntryRevision is the entry revision the SVID was signed for.
	EntryRevision int64

	leaf          []byte
	intermediates []*x509.Certificate
	key           []byte
}

// LeafDER returns the DER of the leaf certificate.
func (s *SVID) LeafDER() []byte { return s.leaf }

// Intermediates returns the shared intermediate certificates, leaf side
// first.
func (s *SVID) Intermediates() []*x509.Certificate { return s.intermediates }

// ChainDER returns the concatenated DER of the leaf and the intermediates,
// the Workload API's x509_svid field. It allocates.
func (s *SVID) ChainDER() []byte {
	n := len(s.leaf)
	for _, c := range s.intermediates {
		n += len(c.Raw)
	}
	out := make([]byte, 0, n)
	out = append(out, s.leaf...)
	for _, c := range s.intermediates {
		out = append(out, c.Raw...)
	}
	return out
}

// Certificates parses the leaf and returns it followed by the intermediates.
func (s *SVID) Certificates() ([]*x509.Certificate, error) {
	leaf, err := x509.ParseCertificate(s.leaf)
	if err != nil {
		return nil, wrapErr(err)
	}
	return append([]*x509.Certificate{leaf}, s.intermediates...), nil
}

// PrivateKeyDER returns the private key, PKCS#8 DER, unencrypted (the
// Workload API's x509_svid_key field).
func (s *SVID) PrivateKeyDER() []byte { return s.key }

// ShouldRotateX509 reports whether an X509-SVID leaf valid from notBefore to
// notAfter should be renewed at now: when half of its lifetime has passed,
// or it has expired (SPIRE's default rotation strategy).
func ShouldRotateX509(now, notBefore, notAfter time.Time) bool {
	ttl := notAfter.Sub(now)
	if ttl <= 0 {
		return true
	}
	return ttl <= notAfter.Sub(notBefore)/2
}

func wrapErr(err error) error {
	return fmt.Errorf("cache: %w", err)
}
