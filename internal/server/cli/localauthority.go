package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/protobuf/proto"
)

// authorityKind is X.509 or JWT: the two families of localauthority commands
// differ only in their RPCs, names and the upstream line.
type authorityKind struct {
	word     string // "x509" or "jwt"
	label    string // "X.509" or "JWT"
	upstream bool   // X.509 authorities print their upstream authority
}

func localAuthorityCommands() []command {
	var out []command
	for _, k := range []authorityKind{{word: "x509", label: "X.509", upstream: true}, {word: "jwt", label: "JWT"}} {
		out = append(out,
			command{name: "localauthority " + k.word + " show", synopsis: "Prints the active, prepared and old local " + k.label + " authorities", setup: apiSetup(k.showFlags)},
			command{name: "localauthority " + k.word + " prepare", synopsis: "Creates a new " + k.label + " authority and publishes it in the bundle, not yet used for signing", setup: apiSetup(k.prepareFlags)},
			command{name: "localauthority " + k.word + " activate", synopsis: "Makes the prepared " + k.label + " authority the one that signs", setup: apiSetup(k.changeFlags("activate", "Activated"))},
			command{name: "localauthority " + k.word + " taint", synopsis: "Marks the old " + k.label + " authority as tainted so that everything it signed is renewed", setup: apiSetup(k.changeFlags("taint", "Tainted"))},
			command{name: "localauthority " + k.word + " revoke", synopsis: "Removes the tainted old " + k.label + " authority from the bundle", setup: apiSetup(k.changeFlags("revoke", "Revoked"))},
		)
	}
	return out
}

// printState writes one authority as SPIRE does, indented by two spaces.
func (k authorityKind) printState(e *env, s *localauthorityv1.AuthorityState) {
	_ = e.printf("  Authority ID: %s\n", s.AuthorityId)
	_ = e.printf("  Expires at: %s\n", time.Unix(s.ExpiresAt, 0).UTC())
	if !k.upstream {
		return
	}
	if s.UpstreamAuthoritySubjectKeyId != "" {
		_ = e.printf("  Upstream authority Subject Key ID: %s\n", s.UpstreamAuthoritySubjectKeyId)
		return
	}
	_ = e.printf("  Upstream authority ID: No upstream authority\n")
}

func (k authorityKind) showFlags(fs *flag.FlagSet, e *env) apiAction {
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		var active, prepared, old *localauthorityv1.AuthorityState
		var resp proto.Message
		var err error
		if k.upstream {
			var r *localauthorityv1.GetX509AuthorityStateResponse
			r, err = c.localAuthority().GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
			resp, active, prepared, old = r, r.GetActive(), r.GetPrepared(), r.GetOld()
		} else {
			var r *localauthorityv1.GetJWTAuthorityStateResponse
			r, err = c.localAuthority().GetJWTAuthorityState(ctx, &localauthorityv1.GetJWTAuthorityStateRequest{})
			resp, active, prepared, old = r, r.GetActive(), r.GetPrepared(), r.GetOld()
		}
		if err != nil {
			return fmt.Errorf("could not get %s authorities: %w", k.label, err)
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		for i, slot := range []struct {
			name  string
			state *localauthorityv1.AuthorityState
		}{{"Active", active}, {"Prepared", prepared}, {"Old", old}} {
			if i > 0 {
				_ = e.printf("\n")
			}
			_ = e.printf("%s %s authority:\n", slot.name, k.label)
			if slot.state != nil {
				k.printState(e, slot.state)
			} else {
				_ = e.printf("  No %s %s authority found\n", strings.ToLower(slot.name), k.label)
			}
		}
		return nil
	}
}

func (k authorityKind) prepareFlags(fs *flag.FlagSet, e *env) apiAction {
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		var state *localauthorityv1.AuthorityState
		var resp proto.Message
		var err error
		if k.upstream {
			var r *localauthorityv1.PrepareX509AuthorityResponse
			r, err = c.localAuthority().PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
			resp, state = r, r.GetPreparedAuthority()
		} else {
			var r *localauthorityv1.PrepareJWTAuthorityResponse
			r, err = c.localAuthority().PrepareJWTAuthority(ctx, &localauthorityv1.PrepareJWTAuthorityRequest{})
			resp, state = r, r.GetPreparedAuthority()
		}
		if err != nil {
			return fmt.Errorf("could not prepare %s authority: %w", k.label, err)
		}
		return k.printChange(e, output, resp, "Prepared", "prepared", state)
	}
}

func (k authorityKind) printChange(e *env, output *outputFlag, resp proto.Message, title, what string, state *localauthorityv1.AuthorityState) error {
	if output.json {
		return printProto(e.stdout, resp)
	}
	_ = e.printf("%s %s authority:\n", title, k.label)
	if state == nil {
		return fmt.Errorf("internal error: expected to have %s %s authority information", what, k.label)
	}
	k.printState(e, state)
	return nil
}

// changeFlags builds activate, taint and revoke, which all take -authorityID.
func (k authorityKind) changeFlags(verb, title string) func(fs *flag.FlagSet, e *env) apiAction {
	return func(fs *flag.FlagSet, e *env) apiAction {
		authorityID := fs.String("authorityID", "", "ID of the "+k.label+" authority to "+verb)
		output := addOutputFlag(fs)
		return func(ctx context.Context, c *client) error {
			if *authorityID == "" {
				return errors.New("an authority ID is required")
			}
			la := c.localAuthority()
			id := *authorityID
			var state *localauthorityv1.AuthorityState
			var resp proto.Message
			var err error
			switch {
			case verb == "activate" && k.upstream:
				var r *localauthorityv1.ActivateX509AuthorityResponse
				r, err = la.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: id})
				resp, state = r, r.GetActivatedAuthority()
			case verb == "activate":
				var r *localauthorityv1.ActivateJWTAuthorityResponse
				r, err = la.ActivateJWTAuthority(ctx, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: id})
				resp, state = r, r.GetActivatedAuthority()
			case verb == "taint" && k.upstream:
				var r *localauthorityv1.TaintX509AuthorityResponse
				r, err = la.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: id})
				resp, state = r, r.GetTaintedAuthority()
			case verb == "taint":
				var r *localauthorityv1.TaintJWTAuthorityResponse
				r, err = la.TaintJWTAuthority(ctx, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: id})
				resp, state = r, r.GetTaintedAuthority()
			case k.upstream:
				var r *localauthorityv1.RevokeX509AuthorityResponse
				r, err = la.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: id})
				resp, state = r, r.GetRevokedAuthority()
			default:
				var r *localauthorityv1.RevokeJWTAuthorityResponse
				r, err = la.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: id})
				resp, state = r, r.GetRevokedAuthority()
			}
			if err != nil {
				return fmt.Errorf("could not %s %s authority: %w", verb, k.label, err)
			}
			return k.printChange(e, output, resp, title, strings.ToLower(title), state)
		}
	}
}

func upstreamAuthorityCommands() []command {
	return []command{
		{name: "upstreamauthority taint", synopsis: "Marks an X.509 authority of the upstream CA as tainted", setup: apiSetup(upstreamFlags("taint"))},
		{name: "upstreamauthority revoke", synopsis: "Removes a tainted X.509 authority of the upstream CA from the bundle", setup: apiSetup(upstreamFlags("revoke"))},
	}
}

func upstreamFlags(verb string) func(fs *flag.FlagSet, e *env) apiAction {
	return func(fs *flag.FlagSet, e *env) apiAction {
		skid := fs.String("subjectKeyID", "", "Subject Key ID of the upstream X.509 authority to "+verb)
		output := addOutputFlag(fs)
		return func(ctx context.Context, c *client) error {
			if *skid == "" {
				return errors.New("the Subject Key ID of the X.509 upstream authority is required")
			}
			var resp proto.Message
			var got, title string
			var err error
			if verb == "taint" {
				var r *localauthorityv1.TaintX509UpstreamAuthorityResponse
				r, err = c.localAuthority().TaintX509UpstreamAuthority(ctx, &localauthorityv1.TaintX509UpstreamAuthorityRequest{SubjectKeyId: *skid})
				resp, got, title = r, r.GetUpstreamAuthoritySubjectKeyId(), "Tainted"
			} else {
				var r *localauthorityv1.RevokeX509UpstreamAuthorityResponse
				r, err = c.localAuthority().RevokeX509UpstreamAuthority(ctx, &localauthorityv1.RevokeX509UpstreamAuthorityRequest{SubjectKeyId: *skid})
				resp, got, title = r, r.GetUpstreamAuthoritySubjectKeyId(), "Revoked"
			}
			if err != nil {
				return fmt.Errorf("could not %s X.509 upstream authority: %w", verb, err)
			}
			if output.json {
				return printProto(e.stdout, resp)
			}
			_ = e.printf("%s X.509 upstream authority:\n", title)
			return e.printf("  Subject Key ID: %s\n", got)
		}
	}
}
