// Package authz decides who may call which server RPC, with SPIRE 1.13's
// rules (pkg/server/authpolicy/policy_data.json): a caller on the admin unix
// socket is local and may call every admin RPC; a TCP caller is an admin when
// its SPIFFE ID is in admin_ids or some registration entry for that ID is
// marked admin; an agent, authenticated by its current agent X509-SVID, may
// call only the agent RPCs. It owns no listener and no storage: the
// endpoints package builds the Caller from the connection and supplies the
// lookups in Facts.
package authz

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrDenied matches (errors.Is) every refusal returned by Authorize and CheckAgent.
var ErrDenied = errors.New("authz: permission denied")

// Reason says why an agent was refused, so that agents can act on it
// (re-attest, shut down). It mirrors types.PermissionDeniedDetails_Reason.
type Reason int

// Reasons of an agent refusal.
const (
	ReasonUnspecified Reason = iota
	ReasonAgentExpired
	ReasonAgentNotActive
	ReasonAgentNotAttested
	ReasonAgentMustReattest
	ReasonAgentBanned
)

// DeniedError is a refusal. Msg is the client-visible text, with SPIRE's
// wording ("authorization denied for method ...", "agent ... is banned").
type DeniedError struct {
	Reason Reason
	Msg    string
}

func (e *DeniedError) Error() string { return "authz: " + e.Msg }

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

func deniedf(reason Reason, format string, args ...any) error {
	return &DeniedError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Role is what a caller was authorized as.
type Role uint8

// Roles, in the order Authorize tries them.
const (
	RoleNone       Role = iota // not authorized, or an allow-any RPC
	RoleLocal                  // admin unix socket
	RoleAdmin                  // admin_ids or an admin entry
	RoleDownstream             // a downstream entry
	RoleAgent                  // an attested agent with its current SVID
)

func (r Role) String() string {
	switch r {
	case RoleLocal:
		return "local"
	case RoleAdmin:
		return "admin"
	case RoleDownstream:
		return "downstream"
	case RoleAgent:
		return "agent"
	default:
		return "nobody"
	}
}

// Caller is who is on the other end of a request.
type Caller struct {
	// Local is true for the admin unix socket.
	Local bool
	// Addr is the peer address.
	Addr net.Addr
	// ID is the SPIFFE ID of the peer's X509-SVID; zero when none was presented.
	ID spiffeid.ID
	// X509SVID is the leaf certificate the peer presented over mTLS, if any.
	X509SVID *x509.Certificate
	// Role is set by the endpoints after Authorize succeeded.
	Role Role
}

// Rule is who may call one RPC.
type Rule struct {
	Any, Local, Admin, Downstream, Agent bool
}

// EntryFlags summarizes the registration entries whose SPIFFE ID is the caller's.
type EntryFlags struct {
	Admin, Downstream bool
}

// Facts answers the questions Authorize may need about a TCP caller. Each
// func is called at most once per request and only when the rule needs it;
// nil funcs answer "no".
type Facts struct {
	// AdminIDs are the server's configured admin_ids.
	AdminIDs []spiffeid.ID
	// Entries reports the flags of the caller's registration entries.
	Entries func(ctx context.Context, id spiffeid.ID) (EntryFlags, error)
	// Agent authorizes an agent's X509-SVID; see CheckAgent.
	Agent func(ctx context.Context, id spiffeid.ID, svid *x509.Certificate) error
}

// Authorize decides whether c may call fullMethod (as "/pkg.Service/Method")
// and returns the role it is authorized as. A refusal is a *DeniedError; any
// other error comes from a Facts lookup. Unknown methods are refused.
func Authorize(ctx context.Context, fullMethod string, c Caller, f Facts) (Role, error) {
	rule, ok := RuleFor(fullMethod)
	if !ok {
		return RoleNone, deniedf(ReasonUnspecified, "authorization denied for method %s", fullMethod)
	}
	if rule.Any {
		return RoleNone, nil
	}
	if rule.Local && c.Local {
		return RoleLocal, nil
	}
	hasID := !c.ID.IsZero()
	if rule.Admin && hasID && slices.Contains(f.AdminIDs, c.ID) {
		return RoleAdmin, nil
	}
	if (rule.Admin || rule.Downstream) && hasID && f.Entries != nil {
		flags, err := f.Entries(ctx, c.ID)
		if err != nil {
			return RoleNone, fmt.Errorf("authz: failed to fetch caller entries: %w", err)
		}
		if rule.Admin && flags.Admin {
			return RoleAdmin, nil
		}
		if rule.Downstream && flags.Downstream {
			return RoleDownstream, nil
		}
	}
	if rule.Agent && !c.Local {
		switch {
		case c.X509SVID == nil:
			return RoleNone, deniedf(ReasonUnspecified, "caller does not have an X509-SVID")
		case !hasID:
			return RoleNone, deniedf(ReasonUnspecified, "caller does not have a SPIFFE ID")
		case f.Agent == nil:
			return RoleNone, deniedf(ReasonAgentNotAttested, "agent %q is not attested", c.ID)
		}
		if err := f.Agent(ctx, c.ID, c.X509SVID); err != nil {
			return RoleNone, err
		}
		return RoleAgent, nil
	}
	return RoleNone, deniedf(ReasonUnspecified, "authorization denied for method %s", fullMethod)
}
