package datastore

import "errors"

// Sentinel errors callers branch on. The API layer maps them to gRPC codes:
// ErrNotFound -> NotFound, ErrAlreadyExists -> AlreadyExists,
// ErrFailedPrecondition -> FailedPrecondition, ErrInvalidArgument -> InvalidArgument.
var (
	ErrNotFound           = errors.New("datastore: record not found")
	ErrAlreadyExists      = errors.New("datastore: record already exists")
	ErrFailedPrecondition = errors.New("datastore: failed precondition")
	ErrInvalidArgument    = errors.New("datastore: invalid argument")
	// ErrNewerSchema is returned by Open when the database was migrated by a
	// newer version of hive-identity than this one.
	ErrNewerSchema = errors.New("datastore: database schema is newer than this binary supports")
)

// Selector is a type:value pair, as in "unix:uid:1000" (type "unix", value "uid:1000").
type Selector struct {
	Type  string
	Value string
}

// Entry is a registration entry. SPIFFE IDs are stored in their canonical
// string form (spiffeid.ID.String()).
type Entry struct {
	ID             string
	SPIFFEID       string
	ParentID       string
	Selectors      []Selector // sorted by type then value when returned
	X509SVIDTTL    int32      // seconds; 0 means the server default
	JWTSVIDTTL     int32      // seconds; 0 means the server default
	DNSNames       []string   // in the order given
	FederatesWith  []string   // trust domain IDs, "spiffe://example.org", sorted
	Admin          bool
	Downstream     bool
	ExpiresAt      int64 // unix seconds; 0 means never
	StoreSVID      bool
	Hint           string
	CreatedAt      int64 // unix seconds, set by CreateEntry
	RevisionNumber int64 // 0 on create, +1 on each update
}

// EntryMask says which fields UpdateEntry replaces; a nil mask replaces all.
type EntryMask struct {
	SPIFFEID, ParentID, Selectors, X509SVIDTTL, JWTSVIDTTL, DNSNames, FederatesWith,
	Admin, Downstream, ExpiresAt, StoreSVID, Hint bool
}

// MatchBehavior is how a selector or federates-with filter compares sets,
// with the semantics of SPIRE's types.SelectorMatch.
type MatchBehavior int32

const (
	MatchExact    MatchBehavior = 0 // the set equals the filter
	MatchSubset   MatchBehavior = 1 // the set is a subset of the filter
	MatchSuperset MatchBehavior = 2 // the set contains all of the filter
	MatchAny      MatchBehavior = 3 // the set shares at least one with the filter
)

// BySelectors filters on an entry's or node's selectors.
type BySelectors struct {
	Selectors []Selector
	Match     MatchBehavior
}

// ByFederatesWith filters on an entry's federated trust domains.
type ByFederatesWith struct {
	TrustDomains []string
	Match        MatchBehavior
}

// Pagination is opaque-token paging. PageSize 0 means no paging (all results).
// On return Token holds the next page token, "" when there are no more results.
type Pagination struct {
	Token    string
	PageSize int32
}

// ListEntriesRequest filters are ANDed; nil or empty means no filter.
type ListEntriesRequest struct {
	BySPIFFEID      string
	ByParentID      string
	BySelectors     *BySelectors
	ByFederatesWith *ByFederatesWith
	ByHint          string
	ByDownstream    *bool
	Pagination      *Pagination
}

// AttestedNode is an agent that attested. It is banned when CertSerialNumber
// and NewCertSerialNumber are both empty.
type AttestedNode struct {
	SPIFFEID            string
	AttestationType     string
	CertSerialNumber    string
	CertNotAfter        int64 // unix seconds
	NewCertSerialNumber string
	NewCertNotAfter     int64
	CanReattest         bool
	Selectors           []Selector // node selectors, sorted; filled by Fetch/List when asked
}

// Banned reports whether the node has been banned.
func (n *AttestedNode) Banned() bool {
	return n.CertSerialNumber == "" && n.NewCertSerialNumber == ""
}

// AttestedNodeMask says which fields UpdateAttestedNode replaces; nil replaces all.
type AttestedNodeMask struct {
	CertSerialNumber, CertNotAfter, NewCertSerialNumber, NewCertNotAfter, CanReattest bool
}

// ListAttestedNodesRequest filters are ANDed.
type ListAttestedNodesRequest struct {
	ByAttestationType string
	ByBanned          *bool
	ByExpiresBefore   int64 // unix seconds; 0 means no filter
	BySelectorMatch   *BySelectors
	ByCanReattest     *bool
	FetchSelectors    bool
	Pagination        *Pagination
}

// JoinToken is a single-use node attestation token.
type JoinToken struct {
	Token     string
	ExpiresAt int64 // unix seconds
}

// X509Authority is a root CA certificate in a bundle.
type X509Authority struct {
	Certificate []byte // DER
	Tainted     bool
}

// JWTAuthority is a JWT signing public key in a bundle.
type JWTAuthority struct {
	KeyID     string
	PublicKey []byte // PKIX DER
	ExpiresAt int64  // unix seconds
	Tainted   bool
}

// Bundle is a trust domain's bundle. TrustDomain is the trust domain ID,
// "spiffe://example.org". SequenceNumber is bumped by the store on every content change.
type Bundle struct {
	TrustDomain     string
	X509Authorities []X509Authority
	JWTAuthorities  []JWTAuthority
	RefreshHint     int64 // seconds
	SequenceNumber  int64
}

// BundleDeleteMode is how DeleteBundle treats entries that federate with the bundle.
type BundleDeleteMode int32

const (
	BundleDeleteRestrict   BundleDeleteMode = 0 // refuse (ErrFailedPrecondition) while entries reference it
	BundleDeleteDelete     BundleDeleteMode = 1 // delete those entries too
	BundleDeleteDissociate BundleDeleteMode = 2 // remove the trust domain from those entries
)

// FederationRelationship is stored now and used by the federation issue.
type FederationRelationship struct {
	TrustDomain           string // trust domain name, "example.org"
	BundleEndpointURL     string
	BundleEndpointProfile string // "https_web" or "https_spiffe"
	EndpointSPIFFEID      string // for https_spiffe
	TrustDomainBundle     *Bundle
}

// ChangeKind names what a change record is about.
type ChangeKind string

const (
	ChangeEntry  ChangeKind = "entry"
	ChangeNode   ChangeKind = "node"   // an attested node or its selectors
	ChangeBundle ChangeKind = "bundle" // any bundle
)

// Change is one row of the change log. Every mutation of entries, attested
// nodes, node selectors and bundles appends one in the same transaction.
// Seq is strictly increasing.
type Change struct {
	Seq  int64
	Kind ChangeKind
	ID   string // entry ID, node SPIFFE ID or bundle trust domain ID
	Op   string // "create", "update", "delete"
	At   int64  // unix seconds
}
