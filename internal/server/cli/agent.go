package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// listAgentsPageSize is the page size of `agent list` (SPIRE's).
const listAgentsPageSize = 1000

// expiresBeforeLayout is the -expiresBefore time format.
const expiresBeforeLayout = "2006-01-02 15:04:05 -0700 -07"

func agentCommands() []command {
	return []command{
		{name: "agent list", synopsis: "Lists attested agents", setup: apiSetup(agentListFlags)},
		{name: "agent count", synopsis: "Counts attested agents", setup: apiSetup(agentCountFlags)},
		{name: "agent show", synopsis: "Prints one attested agent", setup: apiSetup(agentShowFlags)},
		{name: "agent ban", synopsis: "Bans an agent: it is evicted and may not attest again", setup: apiSetup(agentBanFlags)},
		{name: "agent evict", synopsis: "Evicts an agent: it must attest again", setup: apiSetup(agentEvictFlags)},
		{name: "agent purge", synopsis: "Removes re-attestable agents whose SVID expired long ago", setup: apiSetup(agentPurgeFlags)},
	}
}

// agentFilter holds the filter flags of list and count.
type agentFilter struct {
	selectors        stringsFlag
	attestationType  *string
	canReattest      triState
	banned           triState
	expiresBefore    *string
	matchSelectorsOn *string
}

func addAgentFilter(fs *flag.FlagSet) *agentFilter {
	f := &agentFilter{
		attestationType:  fs.String("attestationType", "", "Only agents attested with this node attestor (join_token, x509pop...)"),
		expiresBefore:    fs.String("expiresBefore", "", "Only agents whose SVID expires before this time, as 2006-01-02 15:04:05 -0700 -07"),
		matchSelectorsOn: fs.String("matchSelectorsOn", "superset", "How -selector matches: exact, any, superset or subset"),
	}
	fs.Var(&f.selectors, "selector", "Node selector as type:value to filter on; repeat for more")
	fs.Var(&f.canReattest, "canReattest", "true: only agents that can re-attest; false: only those that cannot; anything else: all")
	fs.Var(&f.banned, "banned", "true: only banned agents; false: only agents not banned; anything else: all")
	return f
}

func (f *agentFilter) build() (*agentv1.ListAgentsRequest_Filter, error) {
	filter := &agentv1.ListAgentsRequest_Filter{}
	if len(f.selectors) > 0 {
		match, ok := matchBehavior(*f.matchSelectorsOn)
		if !ok {
			return nil, errors.New("unsupported match behavior")
		}
		selectors := make([]*types.Selector, 0, len(f.selectors))
		for _, s := range f.selectors {
			sel, err := parseSelector(s)
			if err != nil {
				return nil, fmt.Errorf("error parsing selector %q: %w", s, err)
			}
			selectors = append(selectors, sel)
		}
		filter.BySelectorMatch = &types.SelectorMatch{Selectors: selectors, Match: types.SelectorMatch_MatchBehavior(match)}
	}
	if *f.expiresBefore != "" {
		if _, err := time.Parse(expiresBeforeLayout, *f.expiresBefore); err != nil {
			return nil, fmt.Errorf("date is not valid: %w", err)
		}
		filter.ByExpiresBefore = *f.expiresBefore
	}
	filter.ByAttestationType = *f.attestationType
	filter.ByCanReattest = f.canReattest.value()
	filter.ByBanned = f.banned.value()
	return filter, nil
}

func (t triState) value() *wrapperspb.BoolValue {
	switch t {
	case triTrue:
		return wrapperspb.Bool(true)
	case triFalse:
		return wrapperspb.Bool(false)
	}
	return nil
}

func agentListFlags(fs *flag.FlagSet, e *env) apiAction {
	f := addAgentFilter(fs)
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		filter, err := f.build()
		if err != nil {
			return err
		}
		resp := &agentv1.ListAgentsResponse{}
		token := ""
		for {
			page, err := c.agent().ListAgents(ctx, &agentv1.ListAgentsRequest{PageSize: listAgentsPageSize, PageToken: token, Filter: filter})
			if err != nil {
				return err
			}
			resp.Agents = append(resp.Agents, page.Agents...)
			if token = page.NextPageToken; token == "" {
				break
			}
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		if len(resp.Agents) == 0 {
			return e.printf("No attested agents found\n")
		}
		_ = e.printf("Found %d attested %s:\n\n", len(resp.Agents), plural(len(resp.Agents), "agent", "agents"))
		return printAgents(e, resp.Agents...)
	}
}

func agentCountFlags(fs *flag.FlagSet, e *env) apiAction {
	f := addAgentFilter(fs)
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		lf, err := f.build()
		if err != nil {
			return err
		}
		resp, err := c.agent().CountAgents(ctx, &agentv1.CountAgentsRequest{Filter: &agentv1.CountAgentsRequest_Filter{
			ByAttestationType: lf.ByAttestationType,
			BySelectorMatch:   lf.BySelectorMatch,
			ByBanned:          lf.ByBanned,
			ByCanReattest:     lf.ByCanReattest,
			ByExpiresBefore:   lf.ByExpiresBefore,
		}})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		return e.printf("%d attested %s\n", resp.Count, plural(int(resp.Count), "agent", "agents"))
	}
}

// agentIDFlag registers -spiffeID and returns a parser for it.
func agentIDFlag(fs *flag.FlagSet, what string) func() (*types.SPIFFEID, error) {
	s := fs.String("spiffeID", "", "SPIFFE ID of the agent to "+what)
	return func() (*types.SPIFFEID, error) {
		if *s == "" {
			return nil, errors.New("a SPIFFE ID is required")
		}
		return protoID(*s)
	}
}

func agentShowFlags(fs *flag.FlagSet, e *env) apiAction {
	id := agentIDFlag(fs, "print")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		agentID, err := id()
		if err != nil {
			return err
		}
		agent, err := c.agent().GetAgent(ctx, &agentv1.GetAgentRequest{Id: agentID})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, agent)
		}
		_ = e.printf("Found an attested agent given its SPIFFE ID\n\n")
		if err := printAgents(e, agent); err != nil {
			return err
		}
		for _, s := range agent.Selectors {
			_ = e.printf("%-18s: %s:%s\n", "Selectors", s.Type, s.Value)
		}
		return nil
	}
}

func agentBanFlags(fs *flag.FlagSet, e *env) apiAction {
	id := agentIDFlag(fs, "ban")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		agentID, err := id()
		if err != nil {
			return err
		}
		resp, err := c.agent().BanAgent(ctx, &agentv1.BanAgentRequest{Id: agentID})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		return e.printf("Agent banned successfully\n")
	}
}

func agentEvictFlags(fs *flag.FlagSet, e *env) apiAction {
	id := agentIDFlag(fs, "evict")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		agentID, err := id()
		if err != nil {
			return err
		}
		resp, err := c.agent().DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: agentID})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		return e.printf("Agent evicted successfully\n")
	}
}

// purgedAgent is one line of `agent purge` output.
type purgedAgent struct {
	AgentID spiffeid.ID `json:"agent_id"`
	Deleted bool        `json:"deleted"`
	Error   string      `json:"error,omitempty"`
}

func agentPurgeFlags(fs *flag.FlagSet, e *env) apiAction {
	expiredFor := fs.Duration("expiredFor", 30*24*time.Hour, "How long an agent's SVID must have been expired for the agent to be purged")
	dryRun := fs.Bool("dryRun", false, "Only print the agents that would be purged")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		resp, err := c.agent().ListAgents(ctx, &agentv1.ListAgentsRequest{
			Filter:     &agentv1.ListAgentsRequest_Filter{ByCanReattest: wrapperspb.Bool(true)},
			OutputMask: &types.AgentMask{X509SvidExpiresAt: true},
		})
		if err != nil {
			return fmt.Errorf("failed to list agents: %w", err)
		}
		result := struct {
			Agents []*purgedAgent `json:"expired_agents"`
		}{Agents: []*purgedAgent{}}
		now := e.clock()
		for _, a := range resp.Agents {
			id, err := agentSPIFFEID(a.GetId())
			if err != nil {
				return err
			}
			if now.Sub(time.Unix(a.X509SvidExpiresAt, 0)) <= *expiredFor {
				continue
			}
			p := &purgedAgent{AgentID: id}
			if !*dryRun {
				if _, err := c.agent().DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: a.Id}); err != nil {
					p.Error = err.Error()
				} else {
					p.Deleted = true
				}
			}
			result.Agents = append(result.Agents, p)
		}
		if output.json {
			return printStruct(e.stdout, []any{&result})
		}
		if len(result.Agents) == 0 {
			return e.printf("No agents to purge.\n")
		}
		_ = e.printf("Found %d expired %s\n\n", len(result.Agents), plural(len(result.Agents), "agent", "agents"))
		if *dryRun {
			_ = e.printf("\nAgents that can be purged:\n")
			for _, p := range result.Agents {
				_ = e.printf("%-18s: %s\n", "SPIFFE ID", p.AgentID)
			}
			return nil
		}
		var purged, failed []*purgedAgent
		for _, p := range result.Agents {
			if p.Deleted {
				purged = append(purged, p)
			} else {
				failed = append(failed, p)
			}
		}
		if len(purged) > 0 {
			_ = e.printf("Agents purged:\n")
			for _, p := range purged {
				_ = e.printf("%-18s: %s\n", "SPIFFE ID", p.AgentID)
			}
		}
		if len(failed) > 0 {
			_ = e.printf("Agents not purged:\n")
			for _, p := range failed {
				_ = e.printf("%-18s: %s\n", "SPIFFE ID", p.AgentID)
				_ = e.printf("%-18s: %s\n", "Error", p.Error)
			}
		}
		return nil
	}
}

// agentSPIFFEID validates an API agent ID.
func agentSPIFFEID(id *types.SPIFFEID) (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(id.GetTrustDomain())
	if err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromPath(td, id.GetPath())
}

// printAgents writes SPIRE's agent blocks: labels in an 18-character field,
// expiry in the local time zone, then a blank line.
func printAgents(e *env, agents ...*types.Agent) error {
	for _, a := range agents {
		id, err := agentSPIFFEID(a.GetId())
		if err != nil {
			return err
		}
		line := func(label string, value any) { _ = e.printf("%-18s: %v\n", label, value) }
		line("SPIFFE ID", id)
		line("Attestation type", a.AttestationType)
		line("Expiration time", time.Unix(a.X509SvidExpiresAt, 0).In(e.location()))
		if a.Banned {
			line("Banned", true)
		} else {
			line("Serial number", a.X509SvidSerialNumber)
		}
		line("Can re-attest", a.CanReattest)
		if err := e.printf("\n"); err != nil {
			return err
		}
	}
	return nil
}
