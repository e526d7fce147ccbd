package api

import (
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// ProtoFromAgent converts an attested node. An agent is banned when its
// current serial number is empty.
func ProtoFromAgent(n *datastore.AttestedNode) (*types.Agent, error) {
	if n == nil {
		return nil, Publicf("missing attested node")
	}
	id, err := ProtoFromIDString(n.SPIFFEID)
	if err != nil {
		return nil, wrapPublic("node has malformed SPIFFE ID", err)
	}
	return &types.Agent{
		Id:                   id,
		AttestationType:      n.AttestationType,
		X509SvidSerialNumber: n.CertSerialNumber,
		X509SvidExpiresAt:    n.CertNotAfter,
		Selectors:            ProtoFromSelectors(n.Selectors),
		Banned:               n.CertSerialNumber == "",
		CanReattest:          n.CanReattest,
	}, nil
}

// ApplyAgentMask clears the fields of a that mask leaves out; nil keeps all.
func ApplyAgentMask(a *types.Agent, mask *types.AgentMask) {
	if mask == nil {
		return
	}
	if !mask.AttestationType {
		a.AttestationType = ""
	}
	if !mask.X509SvidSerialNumber {
		a.X509SvidSerialNumber = ""
	}
	if !mask.X509SvidExpiresAt {
		a.X509SvidExpiresAt = 0
	}
	if !mask.Selectors {
		a.Selectors = nil
	}
	if !mask.Banned {
		a.Banned = false
	}
	if !mask.CanReattest {
		a.CanReattest = false
	}
}
