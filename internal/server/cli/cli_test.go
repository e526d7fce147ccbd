package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"
)

// apiDir starts the in-test API server in a short temp dir and returns the
// -socketPath arguments for it.
func apiDir(t *testing.T) (*fakeAPI, []string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return startFakeAPI(t, dir), []string{"-socketPath", filepath.Join(dir, "s", "api.sock")}
}

// echoCreate answers BatchCreateEntry with the entries sent, given IDs.
func echoCreate(m proto.Message) (proto.Message, error) {
	resp := &entryv1.BatchCreateEntryResponse{}
	for i, e := range m.(*entryv1.BatchCreateEntryRequest).Entries {
		e = proto.CloneOf(e)
		if e.Id == "" {
			e.Id = "id-" + string(rune('a'+i))
		}
		resp.Results = append(resp.Results, &entryv1.BatchCreateEntryResponse_Result{Status: okStatus(), Entry: e})
	}
	return resp, nil
}

func echoUpdate(m proto.Message) (proto.Message, error) {
	resp := &entryv1.BatchUpdateEntryResponse{}
	for _, e := range m.(*entryv1.BatchUpdateEntryRequest).Entries {
		resp.Results = append(resp.Results, &entryv1.BatchUpdateEntryResponse_Result{Status: okStatus(), Entry: e})
	}
	return resp, nil
}

// TestEntryTTLExtension: the runbook's `entry create -ttl N` (and update)
// sets both SVID TTLs; it refuses to be mixed with the precise flags.
func TestEntryTTLExtension(t *testing.T) {
	runbook := []string{
		"-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents",
		"-parentID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent",
		"-selector", "k8s:ns:neural-hive-execution",
		"-selector", "k8s:sa:worker-agents",
	}
	want := &types.Entry{
		SpiffeId:  hive("/ns/neural-hive-execution/sa/worker-agents"),
		ParentId:  hive("/ns/spire-system/sa/spire-agent"),
		Selectors: []*types.Selector{{Type: "k8s", Value: "ns:neural-hive-execution"}, {Type: "k8s", Value: "sa:worker-agents"}},
	}
	for _, tt := range []struct {
		name     string
		cmd      string
		args     []string
		x509, jw int32
		code     int
		stderr   string
	}{
		{name: "ok/create ttl", cmd: "create", args: []string{"-ttl", "3600"}, x509: 3600, jw: 3600},
		{name: "ok/create ttl 0 is the default", cmd: "create", args: []string{"-ttl", "0"}},
		{name: "ok/create precise flags", cmd: "create", args: []string{"-x509SVIDTTL", "60", "-jwtSVIDTTL", "30"}, x509: 60, jw: 30},
		{name: "ok/update ttl", cmd: "update", args: []string{"-entryID", "e1", "-ttl", "900"}, x509: 900, jw: 900},
		{name: "fail/negative", cmd: "create", args: []string{"-ttl", "-1"}, code: 1, stderr: "Error: a positive TTL is required\n"},
		{name: "fail/mixed x509", cmd: "create", args: []string{"-ttl", "60", "-x509SVIDTTL", "60"}, code: 1,
			stderr: "Error: the -ttl flag can't be combined with -x509SVIDTTL or -jwtSVIDTTL\n"},
		{name: "fail/mixed jwt", cmd: "update", args: []string{"-entryID", "e1", "-ttl", "60", "-jwtSVIDTTL", "0"}, code: 1,
			stderr: "Error: the -ttl flag can't be combined with -x509SVIDTTL or -jwtSVIDTTL\n"},
		{name: "fail/overflow", cmd: "create", args: []string{"-ttl", "3000000000"}, code: 1,
			stderr: "Error: invalid value for X509 SVID TTL: overflow converting int(3000000000) to int32\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api, socket := apiDir(t)
			api.on("BatchCreateEntry", responder(echoCreate))
			api.on("BatchUpdateEntry", responder(echoUpdate))
			got := runCLI(testEnv(), nil, append(append(append([]string{"entry", tt.cmd}, socket...), runbook...), tt.args...)...)
			if got.exit != tt.code || got.stderr != tt.stderr {
				t.Fatalf("exit %d stderr %q, want %d %q", got.exit, got.stderr, tt.code, tt.stderr)
			}
			method := "BatchCreateEntry"
			if tt.cmd == "update" {
				method = "BatchUpdateEntry"
			}
			reqs := api.sent(method)
			if tt.code != 0 {
				if len(reqs) != 0 {
					t.Fatalf("refused command sent %d requests", len(reqs))
				}
				return
			}
			e := proto.CloneOf(want)
			e.X509SvidTtl, e.JwtSvidTtl = tt.x509, tt.jw
			var sentEntries []*types.Entry
			if tt.cmd == "update" {
				e.Id = "e1"
				sentEntries = reqs[0].(*entryv1.BatchUpdateEntryRequest).Entries
			} else {
				sentEntries = reqs[0].(*entryv1.BatchCreateEntryRequest).Entries
			}
			if len(sentEntries) != 1 || !proto.Equal(sentEntries[0], e) {
				t.Fatalf("sent %v, want %v", sentEntries, e)
			}
			for _, line := range []string{"X509-SVID TTL    : ", "JWT-SVID TTL     : "} {
				if !strings.Contains(got.stdout, line) {
					t.Errorf("output lacks %q:\n%s", line, got.stdout)
				}
			}
		})
	}
}

// TestRefusals covers client-side refusals the reference capture has no
// example of; messages are SPIRE's, nothing is sent.
func TestRefusals(t *testing.T) {
	for _, tt := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"fail/node entries can not federate", []string{"entry", "create", "-node", "-spiffeID", "spiffe://td/x", "-selector", "a:b", "-federatesWith", "spiffe://p"},
			"Error: node entries can not federate\n"},
		{"fail/negative jwt ttl", []string{"entry", "create", "-parentID", "spiffe://td/p", "-spiffeID", "spiffe://td/x", "-selector", "a:b", "-jwtSVIDTTL", "-1"},
			"Error: a positive JWT-SVID TTL is required\n"},
		{"fail/update parent required", []string{"entry", "update", "-entryID", "x", "-selector", "a:b"}, "Error: a parent ID is required\n"},
		{"fail/update spiffe ID required", []string{"entry", "update", "-entryID", "x", "-selector", "a:b", "-parentID", "spiffe://td/p"}, "Error: a SPIFFE ID is required\n"},
		{"fail/update selector syntax", []string{"entry", "update", "-entryID", "x", "-selector", "ab", "-parentID", "spiffe://td/p", "-spiffeID", "spiffe://td/x"},
			"Error: selector \"ab\" must be formatted as type:value\n"},
		{"fail/show entryID with filters", []string{"entry", "show", "-entryID", "x", "-spiffeID", "spiffe://td/x"}, "Error: the -entryID flag can't be combined with others\n"},
		{"fail/count bad federates match", []string{"entry", "count", "-federatesWith", "spiffe://p", "-matchFederatesWithOn", "all"}, "Error: match behavior \"all\" unknown\n"},
		{"fail/count bad parent", []string{"entry", "count", "-parentID", "td/p"}, "Error: error parsing parent ID \"td/p\": scheme is missing or invalid\n"},
		{"fail/delete file missing", []string{"entry", "delete", "-file", "/nonexistent/ids.json"}, "Error: open /nonexistent/ids.json: no such file or directory\n"},
		{"fail/bundle bad format", []string{"bundle", "set", "-id", "spiffe://p", "-format", "der"}, "Error: invalid format: \"der\"\n"},
		{"fail/bundle show bad format", []string{"bundle", "show", "-format", "der"}, ""},
		{"fail/agent list bad match", []string{"agent", "list", "-selector", "a:b", "-matchSelectorsOn", "all"}, "Error: unsupported match behavior\n"},
		{"fail/agent list bad selector", []string{"agent", "count", "-selector", "ab"}, "Error: error parsing selector \"ab\": selector \"ab\" must be formatted as type:value\n"},
		{"fail/agent ban bad id", []string{"agent", "ban", "-spiffeID", "spiffe://td/a//b"}, "Error: path cannot contain empty segments\n"},
		{"fail/token bad ttl", []string{"token", "generate", "-ttl", "3000000000"}, "Error: invalid value for TTL: overflow converting int(3000000000) to int32\n"},
		{"fail/jwt mint bad id", []string{"jwt", "mint", "-spiffeID", "x", "-audience", "a"}, "Error: scheme is missing or invalid\n"},
		{"fail/localauthority jwt taint id", []string{"localauthority", "jwt", "taint"}, "Error: an authority ID is required\n"},
		{"fail/federation show", []string{"federation", "show"}, "Error: a trust domain name is required\n"},
		{"fail/federation delete", []string{"federation", "delete"}, "Error: id is required\n"},
		{"fail/federation refresh", []string{"federation", "refresh"}, "Error: id is required\n"},
		{"fail/federation spiffe profile without ID", []string{"federation", "create", "-trustDomain", "p", "-bundleEndpointURL", "https://p", "-bundleEndpointProfile", "https_spiffe"},
			"Error: endpoint SPIFFE ID is required if 'https_spiffe' endpoint profile is set\n"},
		{"fail/federation data and flags", []string{"federation", "update", "-data", "x.json", "-trustDomain", "p"},
			"Error: cannot use other flags to specify relationship fields when 'data' flag is set\n"},
		{"fail/federation no URL", []string{"federation", "create", "-trustDomain", "p"}, "Error: bundle endpoint URL is required\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api, socket := apiDir(t)
			got := runCLI(testEnv(), nil, append(tt.args, socket...)...)
			if tt.name == "fail/bundle show bad format" {
				// The format is only checked when printing, after the RPC.
				api.on("GetBundle", &types.Bundle{TrustDomain: "td"})
				got = runCLI(testEnv(), nil, append(tt.args, socket...)...)
				tt.stderr = "Error: invalid format: \"der\"\n"
			}
			if got.exit != 1 || got.stderr != tt.stderr || got.stdout != "" {
				t.Fatalf("exit %d stdout %q stderr %q, want 1 and %q", got.exit, got.stdout, got.stderr, tt.stderr)
			}
			for _, m := range []string{"BatchCreateEntry", "BatchUpdateEntry", "BatchSetFederatedBundle", "BanAgent",
				"CreateJoinToken", "MintJWTSVID", "TaintJWTAuthority", "BatchCreateFederationRelationship"} {
				if n := len(api.sent(m)); n != 0 {
					t.Errorf("%s sent %d times", m, n)
				}
			}
		})
	}
}

// TestOutputFlag: -output parsing as SPIRE's (case-insensitive, prettyprint
// alias, a second different value refused).
func TestOutputFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		json bool
		err  string
	}{
		{args: nil},
		{args: []string{"-output", "JSON"}, json: true},
		{args: []string{"-output", "prettyprint"}},
		{args: []string{"-output", "json", "-output", "json"}, json: true},
		{args: []string{"-output", "json", "-output", "pretty"}, err: `invalid value "pretty" for flag -output: the output format has already been set to "json"`},
		{args: []string{"-output", "yaml"}, err: `invalid value "yaml" for flag -output: bad formatter flag: unknown format option: "yaml"`},
	} {
		api, socket := apiDir(t)
		api.on("CountBundles", &bundlev1.CountBundlesResponse{Count: 2})
		got := runCLI(testEnv(), nil, append(append([]string{"bundle", "count"}, socket...), tt.args...)...)
		switch {
		case tt.err != "":
			if got.exit != 1 || !strings.HasPrefix(got.stderr, tt.err+"\nUsage of bundle count:\n") {
				t.Errorf("%v: exit %d stderr %q", tt.args, got.exit, got.stderr)
			}
		case tt.json:
			if got.stdout != "{\"count\":2}\n" {
				t.Errorf("%v: stdout %q", tt.args, got.stdout)
			}
		default:
			if got.stdout != "2 bundles\n" {
				t.Errorf("%v: stdout %q", tt.args, got.stdout)
			}
		}
	}
}
