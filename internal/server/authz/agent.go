package authz

import (
	"crypto/x509"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// CheckAgent decides whether an agent presenting svid may act as the
// attested node node at time now (CONFORMANCE T3): the SVID must not be
// expired, the node must exist and not be banned, and the SVID serial must be
// the node's current one or the "new" one issued by the last renewal. In the
// latter case promote is true and the caller should make the new serial the
// current one. node is nil when the agent is not attested (evicted).
func CheckAgent(now time.Time, node *datastore.AttestedNode, svid *x509.Certificate) (promote bool, err error) {
	id := ""
	if node != nil {
		id = node.SPIFFEID
	}
	if svid == nil {
		return false, deniedf(ReasonUnspecified, "caller does not have an X509-SVID")
	}
	if id == "" && len(svid.URIs) == 1 {
		id = svid.URIs[0].String()
	}
	serial := svid.SerialNumber.String()
	switch {
	case now.After(svid.NotAfter):
		return false, deniedf(ReasonAgentExpired, "agent %q SVID is expired", id)
	case node == nil:
		return false, deniedf(ReasonAgentNotAttested, "agent %q is not attested", id)
	case node.CertSerialNumber == "":
		return false, deniedf(ReasonAgentBanned, "agent %q is banned", id)
	case node.CertSerialNumber == serial:
		return false, nil
	case node.NewCertSerialNumber != "" && node.NewCertSerialNumber == serial:
		return true, nil
	default:
		return false, deniedf(ReasonAgentNotActive, "agent %q expected to have serial number %q; has %q", id, node.CertSerialNumber, serial)
	}
}
