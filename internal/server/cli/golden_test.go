package cli

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// replay describes how the in-test server answers one recorded invocation.
type replay struct {
	// answers maps an RPC name to its answer: a proto.Message, an error, a
	// responder, or one of the strings
	//   "self"        the invocation's own stdout (a -output json capture) decoded,
	//   "ref:<name>"  another capture's stdout decoded,
	//   "err"         the gRPC error quoted in the invocation's stderr.
	answers map[string]any
	// prepare runs before the command (files, clock, computed answers).
	prepare func(t *testing.T, r *replayRun)
	// check runs after a byte-for-byte match (requests, files written).
	check func(t *testing.T, r *replayRun)
	// help: stderr holds a usage text, compared with normalizeHelp.
	help bool
	// skip, when set, is why this capture is not replayed here.
	skip string
}

// replayRun is the state of one replay.
type replayRun struct {
	ref  refCase
	dir  string // stands for $RUN
	api  *fakeAPI
	env  env
	args []string
	// fix, when set, rewrites our stdout before the comparison (private keys).
	fix func(string) string
}

// TestGolden replays every spire-server capture of the reference against the
// in-test API server and compares exit code, stdout and stderr byte for byte.
func TestGolden(t *testing.T) {
	cases := goldenCases()
	for _, name := range refNames(t) {
		spec, ok := cases[name]
		if !ok {
			t.Errorf("%s: capture has no replay", name)
			continue
		}
		delete(cases, name)
		t.Run(name, func(t *testing.T) {
			if spec.skip != "" {
				t.Skip(spec.skip)
			}
			replayCase(t, loadRef(t, name), spec)
		})
	}
	for name := range cases {
		t.Errorf("replay %s has no capture", name)
	}
}

func replayCase(t *testing.T, ref refCase, spec replay) {
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, d := range []string{"partner", "agent", "mint-out"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inputs, err := filepath.Abs(filepath.Join(refDir, "outputs", "inputs"))
	if err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, inputs, filepath.Join(dir, "inputs"))
	mustSymlink(t, filepath.Join(inputs, "partner-ca.pem"), filepath.Join(dir, "partner", "ca.pem"))
	mustSymlink(t, filepath.Join(inputs, "partner2.jwks.json"), filepath.Join(dir, "partner", "partner2.jwks.json"))
	if err := os.WriteFile(filepath.Join(dir, "agent", "agent.conf"), []byte("agent {\n    trust_domain = \"neural-hive.local\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	words, stdinPath := shellWords(ref.cmd)
	for i, w := range words {
		words[i] = strings.ReplaceAll(w, "$RUN", dir)
	}
	if words[0] != "spire-server" {
		t.Fatalf("not a spire-server command: %s", ref.cmd)
	}
	r := &replayRun{ref: ref, dir: dir, api: startFakeAPI(t, dir), env: testEnv(), args: words[1:]}
	for method, answer := range spec.answers {
		switch a := answer.(type) {
		case string:
			switch {
			case a == "self":
				r.api.on(method, r.api.decode(t, method, ref.stdout))
			case strings.HasPrefix(a, "ref:"):
				r.api.on(method, r.api.decode(t, method, loadRef(t, a[4:]).stdout))
			case a == "err":
				r.api.on(method, quotedRPCError(t, ref.stderr))
			default:
				t.Fatalf("bad answer %q", a)
			}
		default:
			r.api.on(method, answer)
		}
	}
	if spec.prepare != nil {
		spec.prepare(t, r)
	}
	var stdin []byte
	if stdinPath != "" {
		if stdin, err = os.ReadFile(strings.ReplaceAll(stdinPath, "$RUN", dir)); err != nil {
			t.Fatal(err)
		}
	}
	got := runCLI(r.env, stdin, r.args...)
	got.stdout = strings.ReplaceAll(got.stdout, dir, "$RUN")
	got.stderr = strings.ReplaceAll(got.stderr, dir, "$RUN")
	if r.fix != nil {
		got.stdout = r.fix(got.stdout)
	}
	wantErr := ref.stderr
	if spec.help {
		got.stderr, wantErr = normalizeHelp(got.stderr), normalizeHelp(wantErr)
	}
	if got.exit != ref.exit {
		t.Errorf("exit %d, want %d", got.exit, ref.exit)
	}
	if got.stdout != ref.stdout {
		t.Errorf("stdout:\n%s\nwant:\n%s", got.stdout, ref.stdout)
	}
	if got.stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", got.stderr, wantErr)
	}
	if spec.check != nil && !t.Failed() {
		spec.check(t, r)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

var quotedRPC = regexp.MustCompile(`rpc error: code = (\w+) desc = (.*)`)

// quotedRPCError rebuilds the gRPC status quoted in a captured stderr.
func quotedRPCError(t *testing.T, stderr string) error {
	t.Helper()
	m := quotedRPC.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no gRPC error in %q", stderr)
	}
	return status.Error(codeNamed(t, m[1]), m[2])
}

func codeNamed(t *testing.T, name string) codes.Code {
	t.Helper()
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			return c
		}
	}
	t.Fatalf("unknown code %q", name)
	return 0
}

// sent returns the only request of method, as T.
func sent[T proto.Message](t *testing.T, r *replayRun, method string) T {
	t.Helper()
	reqs := r.api.sent(method)
	if len(reqs) != 1 {
		t.Fatalf("%s: %d requests, want 1", method, len(reqs))
	}
	return reqs[0].(T)
}

func wantProto(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s:\n%v\nwant:\n%v", what, got, want)
	}
}

// --- entries -----------------------------------------------------------

// refEntries are the entries of the `entry show` capture taken after every
// create and before any update or delete.
func refEntries(t *testing.T) []*types.Entry {
	t.Helper()
	var resp entryv1.ListEntriesResponse
	if err := unmarshalRef(t, "entry_show_all-json", &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Entries
}

func unmarshalRef(t *testing.T, name string, m proto.Message) error {
	t.Helper()
	return protojson.Unmarshal([]byte(loadRef(t, name).stdout), m)
}

var entryIDLine = regexp.MustCompile(`(?m)^Entry ID         : (.*)$`)

// expectedEntries returns the reference entries whose IDs a captured pretty
// output shows, in reverse order (so the CLI's own sorting is exercised).
func expectedEntries(t *testing.T, out string) []*types.Entry {
	t.Helper()
	all := refEntries(t)
	var list []*types.Entry
	for _, m := range entryIDLine.FindAllStringSubmatch(out, -1) {
		i := slices.IndexFunc(all, func(e *types.Entry) bool { return e.Id == m[1] })
		if i < 0 {
			t.Fatalf("entry %s is not in the entry show capture", m[1])
		}
		list = append(list, proto.CloneOf(all[i]))
	}
	slices.Reverse(list)
	return list
}

var failureLine = regexp.MustCompile(`(?m)^Failed to \w+ the following [\w ]+ \(code: (\w+), msg: ("(?:[^"\\]|\\.)*")\):$`)

// expectedFailures returns the statuses a captured stderr reports, in order.
func expectedFailures(t *testing.T, stderr string) []*types.Status {
	t.Helper()
	var out []*types.Status
	for _, m := range failureLine.FindAllStringSubmatch(stderr, -1) {
		msg, err := strconv.Unquote(m[2])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &types.Status{Code: int32(codeNamed(t, m[1])), Message: msg})
	}
	return out
}

func okStatus() *types.Status { return &types.Status{Code: 0, Message: "OK"} }

// sameEntry reports whether a request entry asks for what a stored entry holds.
func sameEntry(req, stored *types.Entry) bool {
	norm := func(e *types.Entry) *types.Entry {
		c := proto.CloneOf(e)
		c.RevisionNumber, c.CreatedAt = 0, 0
		slices.SortFunc(c.Selectors, func(a, b *types.Selector) int {
			return strings.Compare(a.Type+":"+a.Value, b.Type+":"+b.Value)
		})
		for i, td := range c.FederatesWith {
			c.FederatesWith[i] = strings.TrimPrefix(td, "spiffe://")
		}
		if len(c.DnsNames) == 0 {
			c.DnsNames = nil
		}
		if len(c.FederatesWith) == 0 {
			c.FederatesWith = nil
		}
		return c
	}
	r, s := norm(req), norm(stored)
	if r.Id == "" {
		s.Id = ""
	}
	return proto.Equal(r, s)
}

// createFromCapture answers BatchCreateEntry like the server did in a pretty
// capture: request entries that match a created entry (shown on stdout) get
// it back, the others get the failures of stderr in order.
func createFromCapture(t *testing.T, r *replayRun) {
	created := expectedEntries(t, r.ref.stdout)
	failures := expectedFailures(t, r.ref.stderr)
	r.api.on("BatchCreateEntry", func(m proto.Message) (proto.Message, error) {
		resp := &entryv1.BatchCreateEntryResponse{}
		for _, e := range m.(*entryv1.BatchCreateEntryRequest).Entries {
			if i := slices.IndexFunc(created, func(c *types.Entry) bool { return sameEntry(e, c) }); i >= 0 {
				resp.Results = append(resp.Results, &entryv1.BatchCreateEntryResponse_Result{Status: okStatus(), Entry: created[i]})
				created = slices.Delete(created, i, i+1)
				continue
			}
			if len(failures) == 0 {
				t.Errorf("request entry matches no created entry: %v", e)
				return nil, status.Error(codes.Internal, "unexpected entry")
			}
			resp.Results = append(resp.Results, &entryv1.BatchCreateEntryResponse_Result{Status: failures[0]})
			failures = failures[1:]
		}
		if len(created) > 0 || len(failures) > 0 {
			t.Errorf("request left %d created and %d failures unused", len(created), len(failures))
		}
		return resp, nil
	})
}

var revisionLine = regexp.MustCompile(`(?m)^Revision         : (\d+)$`)

// updateFromCapture answers BatchUpdateEntry like the server did: entries
// shown on stdout are stored (request entry, sorted selectors, the captured
// revision), the others get the failures of stderr in order.
func updateFromCapture(t *testing.T, r *replayRun) {
	ids := entryIDLine.FindAllStringSubmatch(r.ref.stdout, -1)
	revs := revisionLine.FindAllStringSubmatch(r.ref.stdout, -1)
	failures := expectedFailures(t, r.ref.stderr)
	r.api.on("BatchUpdateEntry", func(m proto.Message) (proto.Message, error) {
		resp := &entryv1.BatchUpdateEntryResponse{}
		for _, e := range m.(*entryv1.BatchUpdateEntryRequest).Entries {
			if i := slices.IndexFunc(ids, func(id []string) bool { return id[1] == e.Id }); i >= 0 {
				stored := proto.CloneOf(e)
				stored.RevisionNumber, _ = strconv.ParseInt(revs[i][1], 10, 64)
				sortEntries([]*types.Entry{stored})
				resp.Results = append(resp.Results, &entryv1.BatchUpdateEntryResponse_Result{Status: okStatus(), Entry: stored})
				continue
			}
			resp.Results = append(resp.Results, &entryv1.BatchUpdateEntryResponse_Result{Status: failures[0]})
			failures = failures[1:]
		}
		return resp, nil
	})
}

var (
	deletedLine      = regexp.MustCompile(`(?m)^Deleted entry with ID: (.*)$`)
	deleteFailedLine = regexp.MustCompile(`(?m)^Failed to delete entry with ID (\S+) \(code: (\w+), msg: ("(?:[^"\\]|\\.)*")\)$`)
)

// deleteFromCapture answers BatchDeleteEntry with the outcome per ID a pretty capture shows.
func deleteFromCapture(t *testing.T, r *replayRun) {
	outcome := map[string]*types.Status{}
	for _, m := range deletedLine.FindAllStringSubmatch(r.ref.stdout, -1) {
		outcome[m[1]] = okStatus()
	}
	for _, m := range deleteFailedLine.FindAllStringSubmatch(r.ref.stderr, -1) {
		msg, _ := strconv.Unquote(m[3])
		outcome[m[1]] = &types.Status{Code: int32(codeNamed(t, m[2])), Message: msg}
	}
	r.api.on("BatchDeleteEntry", func(m proto.Message) (proto.Message, error) {
		resp := &entryv1.BatchDeleteEntryResponse{}
		for _, id := range m.(*entryv1.BatchDeleteEntryRequest).Ids {
			st, ok := outcome[id]
			if !ok {
				t.Errorf("unexpected delete of %s", id)
				st = &types.Status{Code: int32(codes.Internal)}
			}
			resp.Results = append(resp.Results, &entryv1.BatchDeleteEntryResponse_Result{Id: id, Status: st})
		}
		return resp, nil
	})
}

// listed answers ListEntries with the entries a pretty capture shows.
func listed(t *testing.T, r *replayRun) {
	r.api.on("ListEntries", &entryv1.ListEntriesResponse{Entries: expectedEntries(t, r.ref.stdout)})
}

// listedReversed answers ListEntries with a JSON capture's entries in reverse
// order, in two pages.
func listedReversed(name string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		if name == "" {
			name = r.ref.name
		}
		var all entryv1.ListEntriesResponse
		if err := unmarshalRef(t, name, &all); err != nil {
			t.Fatal(err)
		}
		slices.Reverse(all.Entries)
		half := len(all.Entries) / 2
		r.api.on("ListEntries", func(m proto.Message) (proto.Message, error) {
			if m.(*entryv1.ListEntriesRequest).PageToken == "" {
				return &entryv1.ListEntriesResponse{Entries: all.Entries[:half], NextPageToken: "page2"}, nil
			}
			return &entryv1.ListEntriesResponse{Entries: all.Entries[half:]}, nil
		})
	}
}

var countLine = regexp.MustCompile(`^(\d+) `)

// countFromCapture answers a Count RPC with the number a pretty capture shows.
func countFromCapture(method string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		n, err := strconv.Atoi(countLine.FindStringSubmatch(r.ref.stdout)[1])
		if err != nil {
			t.Fatal(err)
		}
		switch method {
		case "CountEntries":
			r.api.on(method, &entryv1.CountEntriesResponse{Count: int32(n)})
		case "CountAgents":
			r.api.on(method, &agentv1.CountAgentsResponse{Count: int32(n)})
		case "CountBundles":
			r.api.on(method, &bundlev1.CountBundlesResponse{Count: int32(n)})
		}
	}
}

// checkListFilter asserts the filter `entry show` sent.
func checkListFilter(want *entryv1.ListEntriesRequest_Filter) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		for _, m := range r.api.sent("ListEntries") {
			req := m.(*entryv1.ListEntriesRequest)
			if req.PageSize != 500 {
				t.Errorf("page size %d", req.PageSize)
			}
			wantProto(t, "filter", req.Filter, want)
		}
	}
}

func sid(td, path string) *types.SPIFFEID { return &types.SPIFFEID{TrustDomain: td, Path: path} }

func hive(path string) *types.SPIFFEID { return sid("neural-hive.local", path) }

// --- agents --------------------------------------------------------------

// refAgents are the first three agents of `agent list`, the two last banned
// as they were after `agent ban`.
func refAgents(t *testing.T) []*types.Agent {
	t.Helper()
	var resp agentv1.ListAgentsResponse
	if err := unmarshalRef(t, "agent_list-json", &resp); err != nil {
		t.Fatal(err)
	}
	agents := resp.Agents[:3]
	for _, a := range agents[1:] {
		a.Banned, a.X509SvidSerialNumber = true, ""
	}
	return agents
}

func agentsAnswer(pick func([]*types.Agent) []*types.Agent) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		r.api.on("ListAgents", &agentv1.ListAgentsResponse{Agents: pick(refAgents(t))})
	}
}

func allAgents(a []*types.Agent) []*types.Agent { return a }

// --- local authorities ---------------------------------------------------

var (
	authorityIDLine = regexp.MustCompile(`(?m)^  Authority ID: (.*)$`)
	expiresAtLine   = regexp.MustCompile(`(?m)^  Expires at: (.*)$`)
)

// authorityFromCapture answers a localauthority change RPC with the
// authority a pretty capture shows.
func authorityFromCapture(method string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		expires, err := time.Parse("2006-01-02 15:04:05 -0700 MST", expiresAtLine.FindStringSubmatch(r.ref.stdout)[1])
		if err != nil {
			t.Fatal(err)
		}
		st := &localauthorityv1.AuthorityState{AuthorityId: authorityIDLine.FindStringSubmatch(r.ref.stdout)[1], ExpiresAt: expires.Unix()}
		var resp proto.Message
		switch method {
		case "PrepareX509Authority":
			resp = &localauthorityv1.PrepareX509AuthorityResponse{PreparedAuthority: st}
		case "PrepareJWTAuthority":
			resp = &localauthorityv1.PrepareJWTAuthorityResponse{PreparedAuthority: st}
		case "ActivateX509Authority":
			resp = &localauthorityv1.ActivateX509AuthorityResponse{ActivatedAuthority: st}
		case "ActivateJWTAuthority":
			resp = &localauthorityv1.ActivateJWTAuthorityResponse{ActivatedAuthority: st}
		case "TaintX509Authority":
			resp = &localauthorityv1.TaintX509AuthorityResponse{TaintedAuthority: st}
		case "TaintJWTAuthority":
			resp = &localauthorityv1.TaintJWTAuthorityResponse{TaintedAuthority: st}
		case "RevokeX509Authority":
			resp = &localauthorityv1.RevokeX509AuthorityResponse{RevokedAuthority: st}
		case "RevokeJWTAuthority":
			resp = &localauthorityv1.RevokeJWTAuthorityResponse{RevokedAuthority: st}
		}
		r.api.on(method, resp)
	}
}

// --- federation ----------------------------------------------------------

// echoRelationships answers create/update with the relationships sent, or the
// failures of a pretty capture's stderr when it has some.
func echoRelationships(method string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		failures := expectedFailures(t, r.ref.stderr)
		r.api.on(method, func(m proto.Message) (proto.Message, error) {
			var rels []*types.FederationRelationship
			if req, ok := m.(*trustdomainv1.BatchCreateFederationRelationshipRequest); ok {
				rels = req.FederationRelationships
			} else {
				rels = m.(*trustdomainv1.BatchUpdateFederationRelationshipRequest).FederationRelationships
			}
			if method == "BatchCreateFederationRelationship" {
				resp := &trustdomainv1.BatchCreateFederationRelationshipResponse{}
				for _, fr := range rels {
					res := &trustdomainv1.BatchCreateFederationRelationshipResponse_Result{Status: okStatus(), FederationRelationship: fr}
					if len(failures) > 0 {
						res = &trustdomainv1.BatchCreateFederationRelationshipResponse_Result{Status: failures[0]}
						failures = failures[1:]
					}
					resp.Results = append(resp.Results, res)
				}
				return resp, nil
			}
			resp := &trustdomainv1.BatchUpdateFederationRelationshipResponse{}
			for _, fr := range rels {
				resp.Results = append(resp.Results, &trustdomainv1.BatchUpdateFederationRelationshipResponse_Result{Status: okStatus(), FederationRelationship: fr})
			}
			return resp, nil
		})
	}
}

// --- minting -------------------------------------------------------------

// pemSection returns the DER blocks of a PEM section of a capture.
func pemDERs(t *testing.T, text string) [][]byte {
	t.Helper()
	var out [][]byte
	rest := []byte(text)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, b.Bytes)
		}
	}
}

// mintFromPretty answers MintX509SVID with the SVID chain a pretty capture
// shows and GetBundle with the bundle of that time; the clock is set just
// after issuance (the certificate is back-dated 10 seconds), and our private
// key is replaced by the capture's redaction.
func mintFromPretty(name string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		out := loadRef(t, name).stdout
		svidPart := out[:strings.Index(out, "Private key:")]
		chain := pemDERs(t, svidPart)
		mintAnswers(t, r, chain)
		redacted := regexp.MustCompile(`(?s)-----BEGIN PRIVATE KEY-----\n.*?-----END PRIVATE KEY-----\n`)
		want := redacted.FindString(r.ref.stdout)
		r.fix = func(s string) string { return redacted.ReplaceAllLiteralString(s, want) }
	}
}

func mintAnswers(t *testing.T, r *replayRun, chain [][]byte) {
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	r.api.on("MintX509SVID", &svidv1.MintX509SVIDResponse{Svid: &types.X509SVID{
		Id:        hive("/minted/x509"),
		CertChain: chain,
		ExpiresAt: leaf.NotAfter.Unix(),
	}})
	r.api.on("GetBundle", r.api.decode(t, "GetBundle", loadRef(t, "bundle_show-json").stdout))
	issued := leaf.NotBefore.Add(10*time.Second + 500*time.Millisecond)
	r.env.now = func() time.Time { return issued }
}

// checkMintCSR asserts the CSR and TTL `x509 mint` sent.
func checkMintCSR(ttl int32, dns ...string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		req := sent[*svidv1.MintX509SVIDRequest](t, r, "MintX509SVID")
		csr, err := x509.ParseCertificateRequest(req.Csr)
		if err != nil {
			t.Fatal(err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Error(err)
		}
		if len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://neural-hive.local/minted/x509" || !slices.Equal(csr.DNSNames, dns) || req.Ttl != ttl {
			t.Errorf("CSR URIs %v DNS %v, TTL %d", csr.URIs, csr.DNSNames, req.Ttl)
		}
	}
}

// checkFiles asserts the modes and sizes of files written, as a capture's
// .files.txt lists them.
func checkFiles(sub string, names ...string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		list := r.ref.name
		if list == "jwt_mint_write-pretty" {
			list = "x509_mint_write-pretty" // one listing for both captures
		}
		for _, line := range strings.Split(readRef(t, list, ".files.txt"), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 || strings.HasPrefix(line, "#") || !slices.Contains(names, f[2]) {
				continue
			}
			fi, err := os.Stat(filepath.Join(r.dir, sub, f[2]))
			if err != nil {
				t.Error(err)
				continue
			}
			if mode := fmt.Sprintf("%o", fi.Mode().Perm()); mode != f[0] {
				t.Errorf("%s: mode %s, want %s", f[2], mode, f[0])
			}
		}
	}
}

// jwtTimes reads iat and exp of a JWT without verifying it.
func jwtTimes(t *testing.T, token string) (iat, exp time.Time) {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Iat, Exp int64 }
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
}

// jwtFromCapture answers MintJWTSVID with a token (the capture's stdout when
// empty) and sets the clock just after its issuance.
func jwtFromCapture(token string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		if token == "" {
			token = strings.TrimSpace(r.ref.stdout)
		}
		iat, exp := jwtTimes(t, token)
		r.api.on("MintJWTSVID", &svidv1.MintJWTSVIDResponse{Svid: &types.JWTSVID{
			Token: token, Id: hive("/minted/jwt"), ExpiresAt: exp.Unix(), IssuedAt: iat.Unix(),
		}})
		r.env.now = func() time.Time { return iat.Add(500 * time.Millisecond) }
	}
}

func jwtClock(t *testing.T, r *replayRun) {
	var resp svidv1.MintJWTSVIDResponse
	if err := protojson.Unmarshal([]byte(r.ref.stdout), &resp); err != nil {
		t.Fatal(err)
	}
	r.api.on("MintJWTSVID", &resp)
	iat, _ := jwtTimes(t, resp.Svid.Token)
	r.env.now = func() time.Time { return iat.Add(500 * time.Millisecond) }
}

func checkJWTRequest(ttl int32, audience ...string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		wantProto(t, "request", sent[*svidv1.MintJWTSVIDRequest](t, r, "MintJWTSVID"),
			&svidv1.MintJWTSVIDRequest{Id: hive("/minted/jwt"), Ttl: ttl, Audience: audience})
	}
}

// parsePKCS8 reads the private key of a `x509 mint -output json` capture.
func keyOfCapture(t *testing.T, r *replayRun) {
	var out []struct {
		X509SVID   [][]byte `json:"x509_svid"`
		PrivateKey []byte   `json:"private_key"`
	}
	if err := json.Unmarshal([]byte(r.ref.stdout), &out); err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(out[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	r.env.newKey = func() (crypto.Signer, error) { return key.(crypto.Signer), nil }
	mintAnswers(t, r, out[0].X509SVID)
}

func healthy() map[string]any {
	return map[string]any{"Check": &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}}
}

func answer(method string, a any) map[string]any { return map[string]any{method: a} }
