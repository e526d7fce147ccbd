package api

import (
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Limits of entry fields, as SPIRE 1.13 enforces them.
const (
	HintMaxLength    = 1024
	EntryIDMaxLength = 255
)

// AllEntryFields is the entry mask with every field set.
func AllEntryFields() *types.EntryMask {
	return &types.EntryMask{
		SpiffeId: true, ParentId: true, Selectors: true, X509SvidTtl: true, FederatesWith: true,
		Admin: true, Downstream: true, ExpiresAt: true, DnsNames: true, RevisionNumber: true,
		StoreSvid: true, JwtSvidTtl: true, Hint: true, CreatedAt: true,
	}
}

// EntryFromProto validates an entry message and converts it, with SPIRE's
// rules and messages. mask nil means every field; fields outside mask are
// neither validated nor converted (BatchUpdateEntry with an input mask).
// Errors are public and meant to follow "failed to convert entry: ".
func EntryFromProto(td spiffeid.TrustDomain, e *types.Entry, mask *types.EntryMask) (*datastore.Entry, error) {
	if e == nil {
		return nil, Publicf("missing entry")
	}
	if mask == nil {
		mask = AllEntryFields()
	}
	out := &datastore.Entry{ID: e.Id}
	if mask.ParentId {
		id, err := MemberIDFromProto(td, e.ParentId)
		if err != nil {
			return nil, wrapPublic("invalid parent ID", err)
		}
		out.ParentID = id.String()
	}
	if mask.SpiffeId {
		id, err := WorkloadIDFromProto(td, e.SpiffeId)
		if err != nil {
			return nil, wrapPublic("invalid spiffe ID", err)
		}
		out.SPIFFEID = id.String()
	}
	if mask.Admin {
		out.Admin = e.Admin
	}
	if mask.DnsNames {
		out.DNSNames = make([]string, 0, len(e.DnsNames))
		for _, n := range e.DnsNames {
			if err := ValidateDNSName(n); err != nil {
				return nil, wrapPublic("invalid DNS name", err)
			}
			out.DNSNames = append(out.DNSNames, n)
		}
	}
	if mask.Downstream {
		out.Downstream = e.Downstream
	}
	if mask.ExpiresAt {
		out.ExpiresAt = e.ExpiresAt
	}
	if mask.FederatesWith {
		out.FederatesWith = make([]string, 0, len(e.FederatesWith))
		for _, name := range e.FederatesWith {
			ftd, err := TrustDomainFromString(name)
			if err != nil {
				return nil, wrapPublic("invalid federated trust domain", err)
			}
			out.FederatesWith = append(out.FederatesWith, ftd.IDString())
		}
	}
	if mask.Selectors {
		if len(e.Selectors) == 0 {
			return nil, Publicf("selector list is empty")
		}
		sels, err := SelectorsFromProto(e.Selectors)
		if err != nil {
			return nil, err
		}
		out.Selectors = sels
	}
	if mask.RevisionNumber {
		out.RevisionNumber = e.RevisionNumber
	}
	if mask.StoreSvid {
		out.StoreSVID = e.StoreSvid
	}
	if mask.X509SvidTtl {
		out.X509SVIDTTL = e.X509SvidTtl
	}
	if mask.JwtSvidTtl {
		out.JWTSVIDTTL = e.JwtSvidTtl
	}
	if mask.Hint {
		if len(e.Hint) > HintMaxLength {
			return nil, Publicf("hint is too long, max length is %d characters", HintMaxLength)
		}
		out.Hint = e.Hint
	}
	return out, nil
}

// ValidateNewEntry applies the checks SPIRE's datastore makes before it
// creates an entry, in its order and with its messages ("datastore-validation:
// invalid registration entry: ..."), custom entry ID included.
func ValidateNewEntry(e *datastore.Entry) error {
	return validateEntry(e, nil, true)
}

// ValidateEntryUpdate applies the datastore checks of an update to the
// fields in mask (nil: all). e must be the entry as it will be stored, so
// that the store-SVID rule sees the resulting selectors. The entry ID is
// not checked: an unknown one is NotFound.
func ValidateEntryUpdate(e *datastore.Entry, mask *datastore.EntryMask) error {
	return validateEntry(e, mask, false)
}

func validateEntry(e *datastore.Entry, mask *datastore.EntryMask, create bool) error {
	all := mask == nil
	invalid := func(msg string) error {
		return Publicf("datastore-validation: invalid registration entry: %s", msg)
	}
	if (all || mask.Selectors) && len(e.Selectors) == 0 {
		return invalid("missing selector list")
	}
	if e.StoreSVID {
		for _, s := range e.Selectors {
			if s.Type != e.Selectors[0].Type {
				return invalid("selector types must be the same when store SVID is enabled")
			}
		}
	}
	if create && len(e.ID) > EntryIDMaxLength {
		return invalid("entry ID too long")
	}
	if create && !validEntryID(e.ID) {
		return invalid("entry ID contains invalid characters")
	}
	if (all || mask.SPIFFEID) && e.SPIFFEID == "" {
		return invalid("missing SPIFFE ID")
	}
	if (all || mask.X509SVIDTTL) && e.X509SVIDTTL < 0 {
		return invalid("X509SvidTtl is not set")
	}
	if (all || mask.JWTSVIDTTL) && e.JWTSVIDTTL < 0 {
		return invalid("JwtSvidTtl is not set")
	}
	return nil
}

// validEntryID reports whether a custom entry ID uses only [A-Za-z0-9._-];
// "" (assign one) is valid.
func validEntryID(id string) bool {
	for i := range len(id) {
		c := id[i]
		ok := c == '-' || c == '.' || c == '_' ||
			(c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
		if !ok {
			return false
		}
	}
	return true
}

// ProtoFromEntry converts a stored entry; every field is kept. Federated
// trust domains are returned as names ("example.org") as SPIRE does.
func ProtoFromEntry(e *datastore.Entry) (*types.Entry, error) {
	if e == nil {
		return nil, Publicf("missing registration entry")
	}
	id, err := ProtoFromIDString(e.SPIFFEID)
	if err != nil {
		return nil, wrapPublic("invalid SPIFFE ID", err)
	}
	parent, err := ProtoFromIDString(e.ParentID)
	if err != nil {
		return nil, wrapPublic("invalid parent ID", err)
	}
	var fw []string
	if len(e.FederatesWith) > 0 {
		fw = make([]string, 0, len(e.FederatesWith))
		for _, s := range e.FederatesWith {
			td, err := spiffeid.TrustDomainFromString(s)
			if err != nil {
				return nil, wrapPublic("invalid federated trust domain", err)
			}
			fw = append(fw, td.Name())
		}
	}
	return &types.Entry{
		Id:             e.ID,
		SpiffeId:       id,
		ParentId:       parent,
		Selectors:      ProtoFromSelectors(e.Selectors),
		X509SvidTtl:    e.X509SVIDTTL,
		FederatesWith:  fw,
		Admin:          e.Admin,
		Downstream:     e.Downstream,
		ExpiresAt:      e.ExpiresAt,
		DnsNames:       slices.Clone(e.DNSNames),
		RevisionNumber: e.RevisionNumber,
		StoreSvid:      e.StoreSVID,
		JwtSvidTtl:     e.JWTSVIDTTL,
		Hint:           e.Hint,
		CreatedAt:      e.CreatedAt,
	}, nil
}

// ApplyEntryMask clears the fields of e that mask leaves out; a nil mask
// keeps everything. The ID is always kept.
func ApplyEntryMask(e *types.Entry, mask *types.EntryMask) {
	if mask == nil {
		return
	}
	if !mask.SpiffeId {
		e.SpiffeId = nil
	}
	if !mask.ParentId {
		e.ParentId = nil
	}
	if !mask.Selectors {
		e.Selectors = nil
	}
	if !mask.FederatesWith {
		e.FederatesWith = nil
	}
	if !mask.Admin {
		e.Admin = false
	}
	if !mask.Downstream {
		e.Downstream = false
	}
	if !mask.ExpiresAt {
		e.ExpiresAt = 0
	}
	if !mask.DnsNames {
		e.DnsNames = nil
	}
	if !mask.RevisionNumber {
		e.RevisionNumber = 0
	}
	if !mask.StoreSvid {
		e.StoreSvid = false
	}
	if !mask.X509SvidTtl {
		e.X509SvidTtl = 0
	}
	if !mask.JwtSvidTtl {
		e.JwtSvidTtl = 0
	}
	if !mask.Hint {
		e.Hint = ""
	}
	if !mask.CreatedAt {
		e.CreatedAt = 0
	}
}

// EntryMaskFromProto converts an input mask for UpdateEntry; nil stays nil
// (replace every field).
func EntryMaskFromProto(m *types.EntryMask) *datastore.EntryMask {
	if m == nil {
		return nil
	}
	return &datastore.EntryMask{
		SPIFFEID: m.SpiffeId, ParentID: m.ParentId, Selectors: m.Selectors,
		X509SVIDTTL: m.X509SvidTtl, JWTSVIDTTL: m.JwtSvidTtl, DNSNames: m.DnsNames,
		FederatesWith: m.FederatesWith, Admin: m.Admin, Downstream: m.Downstream,
		ExpiresAt: m.ExpiresAt, StoreSVID: m.StoreSvid, Hint: m.Hint,
	}
}
