package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// listEntriesPageSize is the page size of `entry show` (SPIRE's).
const listEntriesPageSize = 500

func entryCommands() []command {
	return []command{
		{name: "entry create", synopsis: "Registers one or more workload or node entries", setup: apiSetup(entryCreateFlags)},
		{name: "entry update", synopsis: "Replaces one or more registration entries", setup: apiSetup(entryUpdateFlags)},
		{name: "entry delete", synopsis: "Removes registration entries by ID", setup: apiSetup(entryDeleteFlags)},
		{name: "entry show", synopsis: "Lists registration entries, optionally filtered", setup: apiSetup(entryShowFlags)},
		{name: "entry count", synopsis: "Counts registration entries, optionally filtered", setup: apiSetup(entryCountFlags)},
	}
}

// entryFields are the flags create and update share.
type entryFields struct {
	data          *string
	parentID      *string
	spiffeID      *string
	x509SVIDTTL   *int
	jwtSVIDTTL    *int
	ttl           *int
	selectors     stringsFlag
	federatesWith stringsFlag
	dnsNames      stringsFlag
	admin         *bool
	storeSVID     *bool
	downstream    *bool
	entryExpiry   *int64
	hint          *string
	output        *outputFlag
}

func addEntryFields(fs *flag.FlagSet) *entryFields {
	f := &entryFields{
		data:        fs.String("data", "", "JSON file of entries to send instead of the entry flags; - reads standard input"),
		parentID:    fs.String("parentID", "", "SPIFFE ID of the parent (agent or node alias) of the entry"),
		spiffeID:    fs.String("spiffeID", "", "SPIFFE ID issued to what the entry matches"),
		x509SVIDTTL: fs.Int("x509SVIDTTL", 0, "Lifetime in seconds of the X509-SVIDs issued for the entry; 0 uses the server's"),
		jwtSVIDTTL:  fs.Int("jwtSVIDTTL", 0, "Lifetime in seconds of the JWT-SVIDs issued for the entry; 0 uses the server's"),
		ttl:         fs.Int("ttl", 0, "Extension: lifetime in seconds of both the X509-SVIDs and the JWT-SVIDs of the entry"),
		admin:       fs.Bool("admin", false, "Lets the entry's SPIFFE ID call the server's admin APIs"),
		storeSVID:   fs.Bool("storeSVID", false, "Asks agents to hand the entry's SVID to an SVIDStore plugin"),
		downstream:  fs.Bool("downstream", false, "Marks the entry as a downstream SPIRE server"),
		entryExpiry: fs.Int64("entryExpiry", 0, "Unix time in seconds after which the entry is pruned"),
		hint:        fs.String("hint", "", "Hint that tells apart entries with the same SPIFFE ID"),
	}
	fs.Var(&f.selectors, "selector", "Selector as type:value; repeat for more")
	fs.Var(&f.federatesWith, "federatesWith", "Trust domain whose bundle the entry's workloads receive; repeat for more")
	fs.Var(&f.dnsNames, "dns", "DNS name added to the entry's X509-SVIDs; repeat for more")
	f.output = addOutputFlag(fs)
	return f
}

// ttls resolves -x509SVIDTTL, -jwtSVIDTTL and the -ttl extension.
func (f *entryFields) ttls(fs *flag.FlagSet) (x509TTL, jwtTTL int32, err error) {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	x, j := *f.x509SVIDTTL, *f.jwtSVIDTTL
	if set["ttl"] {
		if *f.ttl < 0 {
			return 0, 0, errors.New("a positive TTL is required")
		}
		if set["x509SVIDTTL"] || set["jwtSVIDTTL"] {
			return 0, 0, errors.New("the -ttl flag can't be combined with -x509SVIDTTL or -jwtSVIDTTL")
		}
		x, j = *f.ttl, *f.ttl
	}
	if x509TTL, err = toInt32(x); err != nil {
		return 0, 0, fmt.Errorf("invalid value for X509 SVID TTL: %w", err)
	}
	if jwtTTL, err = toInt32(j); err != nil {
		return 0, 0, fmt.Errorf("invalid value for JWT SVID TTL: %w", err)
	}
	return x509TTL, jwtTTL, nil
}

func toInt32(v int) (int32, error) {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("overflow converting int(%d) to int32", v)
	}
	return int32(v), nil
}

// entry builds the entry the flags describe, once the required flags are
// checked; parse order is SPIRE's (its first error is the one reported).
func (f *entryFields) entry(fs *flag.FlagSet, id string, parentID, spiffeID *types.SPIFFEID) (*types.Entry, error) {
	x509TTL, jwtTTL, err := f.ttls(fs)
	if err != nil {
		return nil, err
	}
	selectors, err := parseSelectors(f.selectors)
	if err != nil {
		return nil, err
	}
	return &types.Entry{
		Id:            id,
		ParentId:      parentID,
		SpiffeId:      spiffeID,
		Downstream:    *f.downstream,
		ExpiresAt:     *f.entryExpiry,
		DnsNames:      f.dnsNames,
		StoreSvid:     *f.storeSVID,
		X509SvidTtl:   x509TTL,
		JwtSvidTtl:    jwtTTL,
		Hint:          *f.hint,
		Selectors:     selectors,
		FederatesWith: f.federatesWith,
		Admin:         *f.admin,
	}, nil
}

// checkTTLs refuses negative TTLs, after the other required flags.
func (f *entryFields) checkTTLs() error {
	if *f.x509SVIDTTL < 0 {
		return errors.New("a positive x509-SVID TTL is required")
	}
	if *f.jwtSVIDTTL < 0 {
		return errors.New("a positive JWT-SVID TTL is required")
	}
	return nil
}

func entryCreateFlags(fs *flag.FlagSet, e *env) apiAction {
	f := addEntryFields(fs)
	entryID := fs.String("entryID", "", "ID to give the entry instead of a generated one")
	node := fs.Bool("node", false, "Makes a node alias entry, parented to the server, that matches agents instead of workloads")
	build := func() ([]*types.Entry, error) {
		if *f.data != "" {
			return readEntryFile(e.stdin, *f.data)
		}
		switch {
		case len(f.selectors) < 1:
			return nil, errors.New("at least one selector is required")
		case *node && len(f.federatesWith) > 0:
			return nil, errors.New("node entries can not federate")
		case *f.parentID == "" && !*node:
			return nil, errors.New("a parent ID is required if the node flag is not set")
		case *f.spiffeID == "":
			return nil, errors.New("a SPIFFE ID is required")
		}
		if err := f.checkTTLs(); err != nil {
			return nil, err
		}
		spiffeID, err := protoID(*f.spiffeID)
		if err != nil {
			return nil, err
		}
		// A node alias entry is parented to the server; -parentID is ignored.
		parentID := &types.SPIFFEID{TrustDomain: spiffeID.TrustDomain, Path: "/spire/server"}
		if !*node {
			if parentID, err = protoID(*f.parentID); err != nil {
				return nil, err
			}
		}
		entry, err := f.entry(fs, *entryID, parentID, spiffeID)
		return []*types.Entry{entry}, err
	}
	return func(ctx context.Context, c *client) error {
		entries, err := build()
		if err != nil {
			return err
		}
		resp, err := c.entry().BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
		if err != nil {
			return err
		}
		// A failed result shows the entry as it was sent.
		for i, r := range resp.Results {
			if r.GetStatus().GetCode() != int32(codes.OK) && i < len(entries) {
				r.Entry = entries[i]
			}
		}
		if f.output.json {
			return printProto(e.stdout, resp)
		}
		return printEntryResults(e, "create", resp.Results)
	}
}

func entryUpdateFlags(fs *flag.FlagSet, e *env) apiAction {
	f := addEntryFields(fs)
	entryID := fs.String("entryID", "", "ID of the entry to replace")
	build := func() ([]*types.Entry, error) {
		if *f.data != "" {
			return readEntryFile(e.stdin, *f.data)
		}
		switch {
		case *entryID == "":
			return nil, errors.New("entry ID is required")
		case len(f.selectors) < 1:
			return nil, errors.New("at least one selector is required")
		case *f.parentID == "":
			return nil, errors.New("a parent ID is required")
		case *f.spiffeID == "":
			return nil, errors.New("a SPIFFE ID is required")
		}
		if err := f.checkTTLs(); err != nil {
			return nil, err
		}
		parentID, err := protoID(*f.parentID)
		if err != nil {
			return nil, err
		}
		spiffeID, err := protoID(*f.spiffeID)
		if err != nil {
			return nil, err
		}
		entry, err := f.entry(fs, *entryID, parentID, spiffeID)
		return []*types.Entry{entry}, err
	}
	return func(ctx context.Context, c *client) error {
		entries, err := build()
		if err != nil {
			return err
		}
		// Like SPIRE, no mask: the whole entry is replaced.
		resp, err := c.entry().BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: entries})
		if err != nil {
			return err
		}
		for i, r := range resp.Results {
			if r.GetStatus().GetCode() != int32(codes.OK) && i < len(entries) {
				r.Entry = entries[i]
			}
		}
		if f.output.json {
			return printProto(e.stdout, resp)
		}
		return printEntryResults(e, "update", resp.Results)
	}
}

// entryResult is a result of BatchCreateEntry or BatchUpdateEntry.
type entryResult interface {
	GetStatus() *types.Status
	GetEntry() *types.Entry
}

// printEntryResults prints the entries that succeeded on stdout, then each
// failure on stderr, and fails when one failed (pretty output only: JSON
// prints everything and succeeds).
func printEntryResults[R entryResult](e *env, verb string, results []R) error {
	failed := 0
	for _, r := range results {
		if r.GetStatus().GetCode() == int32(codes.OK) {
			printEntry(e.stdout, r.GetEntry())
		}
	}
	for _, r := range results {
		if code := r.GetStatus().GetCode(); code != int32(codes.OK) {
			failed++
			_ = e.errorf("Failed to %s the following entry (code: %s, msg: %q):\n", verb, codes.Code(code), r.GetStatus().GetMessage())
			printEntry(e.stderr, r.GetEntry())
		}
	}
	if failed > 0 {
		return fmt.Errorf("failed to %s one or more entries", verb)
	}
	return nil
}

func entryDeleteFlags(fs *flag.FlagSet, e *env) apiAction {
	entryID := fs.String("entryID", "", "ID of the entry to remove")
	file := fs.String("file", "", `JSON file {"ids": [...]} of entry IDs to remove; - reads standard input`)
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		ids := []string{*entryID}
		if *file != "" {
			var err error
			if ids, err = readDeleteFile(e.stdin, *file); err != nil {
				return err
			}
		} else if *entryID == "" {
			return errors.New("an entry ID is required")
		}
		resp, err := c.entry().BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: ids})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		var ok, failed int
		for _, r := range resp.Results {
			if r.GetStatus().GetCode() == int32(codes.OK) {
				ok++
				_ = e.printf("Deleted entry with ID: %s\n", r.Id)
			}
		}
		if ok > 0 {
			_ = e.printf("\n\n")
		}
		for _, r := range resp.Results {
			if code := r.GetStatus().GetCode(); code != int32(codes.OK) {
				failed++
				_ = e.errorf("Failed to delete entry with ID %s (code: %s, msg: %q)\n", r.Id, codes.Code(code), r.Status.Message)
			}
		}
		if failed > 0 {
			_ = e.printf("\n\n")
			if ok == 0 {
				_ = e.printf("Failed to delete %d entries", failed)
			} else {
				_ = e.printf("Deleted %d entries successfully, but failed to delete %d entries", ok, failed)
			}
			return errors.New("failed to delete one or more entries")
		}
		return e.printf("Deleted %d entries successfully", ok)
	}
}

// entryFilter holds the filter flags of show and count.
type entryFilter struct {
	parentID             *string
	spiffeID             *string
	downstream           *bool
	hint                 *string
	matchSelectorsOn     *string
	matchFederatesWithOn *string
	selectors            stringsFlag
	federatesWith        stringsFlag
}

func addEntryFilter(fs *flag.FlagSet) *entryFilter {
	f := &entryFilter{
		parentID:             fs.String("parentID", "", "Only entries with this parent ID"),
		spiffeID:             fs.String("spiffeID", "", "Only entries with this SPIFFE ID"),
		downstream:           fs.Bool("downstream", false, "Only downstream entries (otherwise only the others)"),
		hint:                 fs.String("hint", "", "Only entries with this hint"),
		matchSelectorsOn:     fs.String("matchSelectorsOn", "superset", "How -selector matches: exact, any, superset or subset"),
		matchFederatesWithOn: fs.String("matchFederatesWithOn", "superset", "How -federatesWith matches: exact, any, superset or subset"),
	}
	fs.Var(&f.selectors, "selector", "Selector as type:value to filter on; repeat for more")
	fs.Var(&f.federatesWith, "federatesWith", "Federated trust domain to filter on; repeat for more")
	return f
}

// build returns the API filter parts in SPIRE's validation order.
func (f *entryFilter) build() (parent, id *types.SPIFFEID, sel *types.SelectorMatch, fed *types.FederatesWithMatch, err error) {
	if *f.parentID != "" {
		if parent, err = protoID(*f.parentID); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("error parsing parent ID %q: %w", *f.parentID, err)
		}
	}
	if *f.spiffeID != "" {
		if id, err = protoID(*f.spiffeID); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("error parsing SPIFFE ID %q: %w", *f.spiffeID, err)
		}
	}
	if len(f.selectors) > 0 {
		match, ok := matchBehavior(*f.matchSelectorsOn)
		if !ok {
			return nil, nil, nil, nil, fmt.Errorf("match behavior %q unknown", *f.matchSelectorsOn)
		}
		selectors, err := parseSelectors(f.selectors)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("error parsing selectors: %w", err)
		}
		sel = &types.SelectorMatch{Selectors: selectors, Match: types.SelectorMatch_MatchBehavior(match)}
	}
	if len(f.federatesWith) > 0 {
		match, ok := matchBehavior(*f.matchFederatesWithOn)
		if !ok {
			return nil, nil, nil, nil, fmt.Errorf("match behavior %q unknown", *f.matchFederatesWithOn)
		}
		fed = &types.FederatesWithMatch{TrustDomains: f.federatesWith, Match: types.FederatesWithMatch_MatchBehavior(match)}
	}
	return parent, id, sel, fed, nil
}

// matchBehavior maps a -match*On value to the API enum number, which is the
// same for selectors and federated trust domains (exact 0, subset 1,
// superset 2, any 3).
func matchBehavior(s string) (int32, bool) {
	switch s {
	case "exact":
		return int32(types.SelectorMatch_MATCH_EXACT), true
	case "subset":
		return int32(types.SelectorMatch_MATCH_SUBSET), true
	case "superset":
		return int32(types.SelectorMatch_MATCH_SUPERSET), true
	case "any":
		return int32(types.SelectorMatch_MATCH_ANY), true
	}
	return 0, false
}

func (f *entryFilter) hintValue() *wrapperspb.StringValue {
	if *f.hint == "" {
		return nil
	}
	return wrapperspb.String(*f.hint)
}

func entryShowFlags(fs *flag.FlagSet, e *env) apiAction {
	entryID := fs.String("entryID", "", "Only the entry with this ID")
	f := addEntryFilter(fs)
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *entryID != "" && (*f.parentID != "" || *f.spiffeID != "" || len(f.selectors) > 0) {
			return errors.New("the -entryID flag can't be combined with others")
		}
		resp := &entryv1.ListEntriesResponse{}
		if *entryID != "" {
			entry, err := c.entry().GetEntry(ctx, &entryv1.GetEntryRequest{Id: *entryID})
			if err != nil {
				return fmt.Errorf("error fetching entry ID %s: %w", *entryID, err)
			}
			resp.Entries = append(resp.Entries, entry)
		} else {
			parent, id, sel, fed, err := f.build()
			if err != nil {
				return err
			}
			filter := &entryv1.ListEntriesRequest_Filter{
				ByParentId:      parent,
				BySpiffeId:      id,
				BySelectors:     sel,
				ByFederatesWith: fed,
				ByHint:          f.hintValue(),
				ByDownstream:    wrapperspb.Bool(*f.downstream),
			}
			token := ""
			for {
				page, err := c.entry().ListEntries(ctx, &entryv1.ListEntriesRequest{
					PageSize:  listEntriesPageSize,
					PageToken: token,
					Filter:    filter,
				})
				if err != nil {
					return fmt.Errorf("error fetching entries: %w", err)
				}
				resp.Entries = append(resp.Entries, page.Entries...)
				if token = page.NextPageToken; token == "" {
					break
				}
			}
		}
		sortEntries(resp.Entries)
		if output.json {
			return printProto(e.stdout, resp)
		}
		_ = e.printf("Found %d %s\n", len(resp.Entries), plural(len(resp.Entries), "entry", "entries"))
		for _, entry := range resp.Entries {
			printEntry(e.stdout, entry)
		}
		return nil
	}
}

func entryCountFlags(fs *flag.FlagSet, e *env) apiAction {
	f := addEntryFilter(fs)
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		parent, id, sel, fed, err := f.build()
		if err != nil {
			return err
		}
		resp, err := c.entry().CountEntries(ctx, &entryv1.CountEntriesRequest{Filter: &entryv1.CountEntriesRequest_Filter{
			ByParentId:      parent,
			BySpiffeId:      id,
			BySelectors:     sel,
			ByFederatesWith: fed,
			ByHint:          f.hintValue(),
			ByDownstream:    wrapperspb.Bool(*f.downstream),
		}})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		return e.printf("%d registration %s\n", resp.Count, plural(int(resp.Count), "entry", "entries"))
	}
}

// printEntry writes SPIRE's entry block: labels in a 17-character field, then
// a blank line.
func printEntry(w io.Writer, e *types.Entry) {
	line := func(label string, value any) { fmt.Fprintf(w, "%-17s: %v\n", label, value) }
	id := e.GetId()
	if id == "" {
		id = "(none)"
	}
	line("Entry ID", id)
	line("SPIFFE ID", idString(e.GetSpiffeId()))
	line("Parent ID", idString(e.GetParentId()))
	line("Revision", e.GetRevisionNumber())
	if e.GetDownstream() {
		line("Downstream", true)
	}
	line("X509-SVID TTL", ttlText(e.GetX509SvidTtl()))
	line("JWT-SVID TTL", ttlText(e.GetJwtSvidTtl()))
	if e.GetExpiresAt() != 0 {
		line("Expiration time", time.Unix(e.GetExpiresAt(), 0).UTC())
	}
	for _, s := range e.GetSelectors() {
		line("Selector", s.Type+":"+s.Value)
	}
	for _, td := range e.GetFederatesWith() {
		line("FederatesWith", td)
	}
	for _, dns := range e.GetDnsNames() {
		line("DNS name", dns)
	}
	if e.GetAdmin() {
		line("Admin", true)
	}
	if e.GetStoreSvid() {
		line("StoreSvid", true)
	}
	if e.GetHint() != "" {
		line("Hint", e.GetHint())
	}
	fmt.Fprintln(w)
}

func ttlText(ttl int32) any {
	if ttl == 0 {
		return "default"
	}
	return ttl
}

// sortEntries orders entries as SPIRE's `entry show` does: selectors within
// each entry by type then value, entries by SPIFFE ID, parent ID, X.509 TTL,
// JWT TTL, then selectors.
func sortEntries(entries []*types.Entry) {
	compareSelector := func(a, b *types.Selector) int {
		return cmp.Or(strings.Compare(a.Type, b.Type), strings.Compare(a.Value, b.Value))
	}
	for _, e := range entries {
		slices.SortStableFunc(e.Selectors, compareSelector)
	}
	slices.SortStableFunc(entries, func(a, b *types.Entry) int {
		return cmp.Or(
			strings.Compare(a.GetSpiffeId().GetTrustDomain(), b.GetSpiffeId().GetTrustDomain()),
			strings.Compare(a.GetSpiffeId().GetPath(), b.GetSpiffeId().GetPath()),
			strings.Compare(a.GetParentId().GetTrustDomain(), b.GetParentId().GetTrustDomain()),
			strings.Compare(a.GetParentId().GetPath(), b.GetParentId().GetPath()),
			cmp.Compare(a.X509SvidTtl, b.X509SvidTtl),
			cmp.Compare(a.JwtSvidTtl, b.JwtSvidTtl),
			cmp.Compare(len(a.Selectors), len(b.Selectors)),
			slices.CompareFunc(a.Selectors, b.Selectors, compareSelector),
		)
	})
}
