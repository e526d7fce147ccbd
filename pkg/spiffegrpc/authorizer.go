package spiffegrpc

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authorizer decides whether the authenticated SPIFFE ID id may call the
// full gRPC method (for example "/registry.v1.Registry/Register"). It runs
// on every call after authentication succeeded; a non-nil error refuses the
// call with PERMISSION_DENIED (reason "denied"). The error is logged but not
// sent to the caller. It must be safe for concurrent use.
type Authorizer func(ctx context.Context, id spiffeid.ID, method string) error

// AuthorizeAny accepts every authenticated ID, of any trust domain the
// bundle source knows.
func AuthorizeAny() Authorizer {
	return func(context.Context, spiffeid.ID, string) error { return nil }
}

// AuthorizeID accepts exactly one SPIFFE ID.
func AuthorizeID(allowed spiffeid.ID) Authorizer {
	return func(_ context.Context, id spiffeid.ID, _ string) error {
		if id != allowed {
			return fmt.Errorf("%w: %s is not %s", ErrDenied, id, allowed)
		}
		return nil
	}
}

// AuthorizeOneOf accepts any of the given SPIFFE IDs.
func AuthorizeOneOf(allowed ...spiffeid.ID) Authorizer {
	set := make(map[spiffeid.ID]struct{}, len(allowed))
	for _, id := range allowed {
		set[id] = struct{}{}
	}
	return func(_ context.Context, id spiffeid.ID, _ string) error {
		if _, ok := set[id]; !ok {
			return fmt.Errorf("%w: %s is not an allowed ID", ErrDenied, id)
		}
		return nil
	}
}

// AuthorizeMemberOf accepts any ID of the trust domain td.
func AuthorizeMemberOf(td spiffeid.TrustDomain) Authorizer {
	return func(_ context.Context, id spiffeid.ID, _ string) error {
		if !id.MemberOf(td) {
			return fmt.Errorf("%w: %s is not a member of trust domain %q", ErrDenied, id, td)
		}
		return nil
	}
}

// AuthorizePathPrefix accepts IDs of trust domain td whose path is prefix or
// lies below it, segment by segment: prefix "/ns/prod" accepts
// spiffe://td/ns/prod and spiffe://td/ns/prod/sa/x but not
// spiffe://td/ns/production. A trailing "/" on prefix is ignored.
func AuthorizePathPrefix(td spiffeid.TrustDomain, prefix string) Authorizer {
	prefix = strings.TrimSuffix(prefix, "/")
	return func(_ context.Context, id spiffeid.ID, _ string) error {
		p := id.Path()
		if id.MemberOf(td) && (p == prefix || strings.HasPrefix(p, prefix+"/")) {
			return nil
		}
		return fmt.Errorf("%w: %s is not under %s%s", ErrDenied, id, td.IDString(), prefix)
	}
}

// AuthorizeMatcher adapts a go-spiffe spiffeid.Matcher (MatchID, MatchOneOf,
// MatchMemberOf, ...).
func AuthorizeMatcher(match spiffeid.Matcher) Authorizer {
	return func(_ context.Context, id spiffeid.ID, _ string) error {
		if err := match(id); err != nil {
			return fmt.Errorf("%w: %w", ErrDenied, err)
		}
		return nil
	}
}

// AuthorizeMethods applies a per-method policy: rules maps full method names
// to the Authorizer for that method. A method without a rule is refused.
// Extension.
func AuthorizeMethods(rules map[string]Authorizer) Authorizer {
	rules = maps.Clone(rules)
	return func(ctx context.Context, id spiffeid.ID, method string) error {
		a, ok := rules[method]
		if !ok || a == nil {
			return fmt.Errorf("%w: no rule for method %s", ErrDenied, method)
		}
		return a(ctx, id, method)
	}
}

// AuthorizeAll accepts an ID only if every Authorizer accepts it.
func AuthorizeAll(authorizers ...Authorizer) Authorizer {
	authorizers = slices.Clone(authorizers)
	return func(ctx context.Context, id spiffeid.ID, method string) error {
		for _, a := range authorizers {
			if err := a(ctx, id, method); err != nil {
				return err
			}
		}
		return nil
	}
}
