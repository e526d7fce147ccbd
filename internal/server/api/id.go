package api

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// MaxIDLength is the longest SPIFFE ID the API accepts, in bytes (SPIFFE-ID
// §2.3: IDs up to 2048 bytes must be supported and longer ones should not be
// generated; CONFORMANCE ID-12).
const MaxIDLength = 2048

// MaxTrustDomainLength is the longest trust domain name the API accepts, in
// bytes (SPIFFE-ID §2.3).
const MaxTrustDomainLength = 255

// Reserved paths of the SPIRE namespace.
const (
	serverIDPath    = "/spire/server"
	agentPathPrefix = "/spire/agent/"
)

// ServerID is the SPIFFE ID of the server of td, the parent of node entries.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := spiffeid.FromPath(td, serverIDPath) // a constant valid path
	return id
}

// IDFromProto parses a SPIFFE ID message with the strict grammar of go-spiffe.
func IDFromProto(p *types.SPIFFEID) (spiffeid.ID, error) {
	if p == nil {
		return spiffeid.ID{}, Publicf("request must specify SPIFFE ID")
	}
	td, err := TrustDomainFromString(p.TrustDomain)
	if err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromPath(td, p.Path)
	if err != nil {
		return spiffeid.ID{}, &PublicError{Msg: err.Error(), Err: err}
	}
	if n := len(id.String()); n > MaxIDLength {
		return spiffeid.ID{}, Publicf("SPIFFE ID is %d bytes, more than %d", n, MaxIDLength)
	}
	return id, nil
}

// ProtoFromID converts an ID to its message form (trust domain name and path).
func ProtoFromID(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

// ProtoFromIDString converts a canonical SPIFFE ID string, as stored by the
// datastore, to its message form.
func ProtoFromIDString(s string) (*types.SPIFFEID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return nil, err
	}
	return ProtoFromID(id), nil
}

// VerifyMemberID checks that id is a non-root member of td.
func VerifyMemberID(td spiffeid.TrustDomain, id spiffeid.ID) error {
	if !id.MemberOf(td) {
		return Publicf("%q is not a member of trust domain %q", id, td)
	}
	if id.Path() == "" {
		return Publicf("%q is not a member of trust domain %q; path is empty", id, td)
	}
	return nil
}

// VerifyWorkloadID checks that id is a non-root member of td outside the
// reserved /spire namespace.
func VerifyWorkloadID(td spiffeid.TrustDomain, id spiffeid.ID) error {
	if !id.MemberOf(td) {
		return Publicf("%q is not a member of trust domain %q", id, td)
	}
	if id.Path() == "" {
		return Publicf("%q is not a workload in trust domain %q; path is empty", id, td)
	}
	if IsReservedPath(id.Path()) {
		return Publicf("%q is not a workload in trust domain %q; path is in the reserved namespace", id, td)
	}
	return nil
}

// VerifyAgentID checks that id is an agent ID of td (under /spire/agent/).
func VerifyAgentID(td spiffeid.TrustDomain, id spiffeid.ID) error {
	if !id.MemberOf(td) {
		return Publicf("%q is not a member of trust domain %q", id, td)
	}
	if id.Path() == "" {
		return Publicf("%q is not an agent in trust domain %q; path is empty", id, td)
	}
	if !strings.HasPrefix(id.Path(), agentPathPrefix) {
		return Publicf("%q is not an agent in trust domain %q; path is not in the agent namespace", id, td)
	}
	return nil
}

// IsReservedPath reports whether path is in SPIRE's reserved /spire namespace.
func IsReservedPath(path string) bool {
	return path == "/spire" || strings.HasPrefix(path, "/spire/")
}

// MemberIDFromProto parses p and checks it with VerifyMemberID.
func MemberIDFromProto(td spiffeid.TrustDomain, p *types.SPIFFEID) (spiffeid.ID, error) {
	return checkedID(td, p, VerifyMemberID)
}

// WorkloadIDFromProto parses p and checks it with VerifyWorkloadID.
func WorkloadIDFromProto(td spiffeid.TrustDomain, p *types.SPIFFEID) (spiffeid.ID, error) {
	return checkedID(td, p, VerifyWorkloadID)
}

// AgentIDFromProto parses p and checks it with VerifyAgentID.
func AgentIDFromProto(td spiffeid.TrustDomain, p *types.SPIFFEID) (spiffeid.ID, error) {
	return checkedID(td, p, VerifyAgentID)
}

func checkedID(td spiffeid.TrustDomain, p *types.SPIFFEID, verify func(spiffeid.TrustDomain, spiffeid.ID) error) (spiffeid.ID, error) {
	id, err := IDFromProto(p)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if err := verify(td, id); err != nil {
		return spiffeid.ID{}, err
	}
	return id, nil
}

// TrustDomainFromString parses a trust domain name or ID ("example.org" or
// "spiffe://example.org") and refuses names over 255 bytes; its error is
// public.
func TrustDomainFromString(s string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, &PublicError{Msg: err.Error(), Err: err}
	}
	if n := len(td.Name()); n > MaxTrustDomainLength {
		return spiffeid.TrustDomain{}, Publicf("trust domain is %d bytes, more than %d", n, MaxTrustDomainLength)
	}
	return td, nil
}

// wrapPublic prefixes a public error's text, keeping it public.
func wrapPublic(prefix string, err error) error {
	var pe *PublicError
	if errors.As(err, &pe) {
		return &PublicError{Msg: prefix + ": " + pe.Msg, Err: err}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
