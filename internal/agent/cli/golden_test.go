package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// goldenDir holds invocations recorded from real SPIRE v1.13.3 (see its README).
const goldenDir = "testdata/spire-1.13.3"

// goldenTime is inside the validity of every SVID of the recorded responses.
var goldenTime = time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)

// golden is one recorded invocation of the real spire-agent.
type golden struct {
	name   string
	args   []string // with $RUN still in place
	stdout string
	stderr string
	exit   int
}

func loadGolden(tb testing.TB, name string) golden {
	tb.Helper()
	read := func(ext string) string {
		b, err := os.ReadFile(filepath.Join(goldenDir, name+ext))
		if err != nil {
			tb.Fatal(err)
		}
		return string(b)
	}
	exit, err := strconv.Atoi(strings.TrimSpace(read(".exit")))
	if err != nil {
		tb.Fatal(err)
	}
	// The recorded command lines are plain words; `x\,y` is the shell's quoting of "x,y".
	words := strings.Fields(strings.ReplaceAll(read(".cmd"), `\`, ""))
	i := slices.Index(words, "spire-agent") // after any wrapper such as watch-sigint.sh
	if i < 0 {
		tb.Fatalf("%s: not a spire-agent command: %q", name, words)
	}
	return golden{name: name, args: words[i+1:], stdout: read(".stdout"), stderr: read(".stderr"), exit: exit}
}

// lastArg returns the last argument of the recorded command (the -svid value).
func lastArg(g golden) string { return g.args[len(g.args)-1] }

// withRun replaces the capture's $RUN placeholder with dir.
func withRun(s, dir string) string { return strings.ReplaceAll(s, "$RUN", dir) }

func argsWithRun(args []string, dir string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = withRun(a, dir)
	}
	return out
}

// readGoldenProto reads a recorded JSON response (the protobuf JSON SPIRE's
// CLI printed) into msg; index selects an element when the output is an array.
func readGoldenProto(tb testing.TB, name string, index int, msg proto.Message) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name+".stdout"))
	if err != nil {
		tb.Fatal(err)
	}
	if index >= 0 {
		var parts []json.RawMessage
		if err := json.Unmarshal(b, &parts); err != nil {
			tb.Fatal(err)
		}
		b = parts[index]
	}
	if err := protojson.Unmarshal(b, msg); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
}

var elapsedRE = regexp.MustCompile(`svids? after (\S+)\n`)

// goldenClock returns a clock that makes the CLI print the same response
// times as the recording.
func goldenClock(tb testing.TB, stdout string) func() time.Time {
	tb.Helper()
	step := time.Duration(0)
	if m := elapsedRE.FindStringSubmatch(stdout); m != nil {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			tb.Fatal(err)
		}
		step = d
	}
	return steppingClock(goldenTime, step)
}

// Recorded agent states: before the CA rotation (three SVIDs, two federated
// bundles) and after it (a fourth SVID chained to a revoked CA).
const (
	stateNone = iota // no agent listening
	stateBefore
	stateBeforeHanging // accepts the call but never answers
	stateAfter
)

// goldenAgent builds a fake Workload API answering as the recorded agent did.
func goldenAgent(tb testing.TB, state int) *fakeWorkloadAPI {
	tb.Helper()
	f := &fakeWorkloadAPI{}
	x509Name := "agent_api_fetch_x509-json"
	if state == stateAfter {
		x509Name = "agent_api_fetch_x509_after_rotation_settled-json"
	}
	if state != stateBeforeHanging {
		f.x509 = &workload.X509SVIDResponse{}
		readGoldenProto(tb, x509Name, -1, f.x509)
	}
	f.jwtBundles = &workload.JWTBundlesResponse{}
	readGoldenProto(tb, "agent_api_fetch_jwt-json", 1, f.jwtBundles)

	allSVIDs := &workload.JWTSVIDResponse{}
	readGoldenProto(tb, "agent_api_fetch_jwt-json", 0, allSVIDs)
	gatewayY := &workload.JWTSVIDResponse{}
	readGoldenProto(tb, "agent_api_fetch_jwt_spiffeid-json", 0, gatewayY)
	// The x,y token appears only in the pretty recording: "token(id):\n\t<jwt>\n".
	xy := strings.Split(loadGolden(tb, "agent_api_fetch_jwt_spiffeid-pretty").stdout, "\n")[1]
	gatewayXY := &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{
		SpiffeId: "spiffe://neural-hive.local/workload/gateway", Svid: strings.TrimPrefix(xy, "\t"), Hint: "gateway",
	}}}
	f.fetchJWT = func(req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
		key := strings.Join(req.GetAudience(), ",") + "|" + req.GetSpiffeId()
		switch key {
		case "x|":
			return allSVIDs, nil
		case "y|spiffe://neural-hive.local/workload/gateway":
			return gatewayY, nil
		case "x,y|spiffe://neural-hive.local/workload/gateway":
			return gatewayXY, nil
		}
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	}

	valid := &workload.ValidateJWTSVIDResponse{}
	readGoldenProto(tb, "agent_api_validate_jwt-json", -1, valid)
	good := lastArg(loadGolden(tb, "agent_api_validate_jwt-pretty"))
	padded := lastArg(loadGolden(tb, "agent_api_validate_jwt_sig_padding_bits_changed-pretty"))
	badSig := lastArg(loadGolden(tb, "agent_api_validate_jwt_bad_signature-pretty"))
	unknownKid := lastArg(loadGolden(tb, "agent_api_validate_jwt_unknown_kid-pretty"))
	// What the recorded agent answered (the wording is the agent's; the CLI only formats it).
	f.validateJWT = func(req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
		invalid := func(msg string) error { return status.Error(codes.InvalidArgument, msg) }
		switch {
		case req.GetSvid() == "not.a.jwt":
			return nil, invalid("unable to parse JWT token: illegal base64 data at input byte 0")
		case req.GetSvid() == unknownKid:
			return nil, invalid(`public key "unknown-kid" not found in trust domain "neural-hive.local"`)
		case req.GetSvid() == badSig:
			return nil, invalid("go-jose/go-jose: error in cryptographic primitive")
		case state == stateAfter:
			return nil, invalid(`public key "DUYbnBlDyMioca1xh7D2c5A7heMoFlMl" not found in trust domain "neural-hive.local"`)
		case req.GetAudience() != "x":
			return nil, invalid(`expected audience in ["` + req.GetAudience() + `"] (audience=["x"])`)
		case req.GetSvid() == good || req.GetSvid() == padded:
			return valid, nil
		}
		return nil, invalid("unexpected token")
	}
	return f
}

var (
	// federatedLineRE matches the federated CA lines of a pretty block.
	federatedLineRE = regexp.MustCompile(`^\[[^\]]+\] CA #`)
	// writeFederatedRE matches the announcement of a federated bundle file.
	writeFederatedRE = regexp.MustCompile(`^Writing federated bundle #\d+ for trust domain (\S+) to file (.*)federated_bundle\.(\d+)\.\d+\.pem\.$`)
)

// normalizeFederatedOrder puts the federated trust domains of each SVID in
// sorted order: SPIRE prints them in Go map order, which varies between runs.
func normalizeFederatedOrder(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		if m := writeFederatedRE.FindStringSubmatch(lines[i]); m != nil {
			lines[i] = "Writing federated bundle for trust domain " + m[1] + " to file " + m[2] + "federated_bundle." + m[3] + ".M.pem."
		}
	}
	sortRuns := func(match func(string) bool, key func(string) string) {
		for i := 0; i < len(lines); {
			j := i
			for j < len(lines) && match(lines[j]) {
				j++
			}
			if j > i {
				slices.SortStableFunc(lines[i:j], func(a, b string) int { return strings.Compare(key(a), key(b)) })
				i = j
			} else {
				i++
			}
		}
	}
	label := func(l string) string { return l[:strings.IndexByte(l, ']')] }
	sortRuns(federatedLineRE.MatchString, label)
	const writing = "Writing federated bundle for trust domain "
	trustDomain := func(l string) string { return strings.Fields(strings.TrimPrefix(l, writing))[0] }
	sortRuns(func(l string) bool { return strings.HasPrefix(l, writing) }, trustDomain)
	return strings.Join(lines, "\n")
}

// TestGolden replays invocations recorded from real SPIRE v1.13.3 against a
// fake Workload API that answers what the recorded agent answered, and
// compares exit code, stdout and stderr byte for byte. Where SPIRE's output
// depends on Go map order (federated bundles), both sides are put in sorted
// order first (sorted marks those cases).
func TestGolden(t *testing.T) {
	for _, tt := range []struct {
		name   string
		state  int
		sorted bool
	}{
		{name: "agent_api_fetch_default-pretty", state: stateBefore},
		{name: "agent_api_fetch_x509-pretty", state: stateBefore, sorted: true},
		{name: "agent_api_fetch_x509-json", state: stateBefore},
		{name: "agent_api_fetch_x509_silent-pretty", state: stateBefore},
		{name: "agent_api_fetch_x509_write_json-json", state: stateBefore},
		{name: "agent_api_fetch_x509_write_missing_dir-pretty", state: stateBefore, sorted: true},
		{name: "agent_api_fetch_x509_timeout-pretty", state: stateBeforeHanging},
		{name: "agent_api_fetch_x509_missing_socket", state: stateNone},
		{name: "agent_api_fetch_x509_after_rotation-pretty", state: stateAfter},
		{name: "agent_api_fetch_x509_after_rotation_settled-pretty", state: stateAfter},
		{name: "agent_api_fetch_x509_after_rotation_settled-json", state: stateAfter},
		{name: "agent_api_fetch_x509_server_down-json", state: stateAfter},
		{name: "agent_api_fetch_jwt-pretty", state: stateBefore},
		{name: "agent_api_fetch_jwt-json", state: stateBefore},
		{name: "agent_api_fetch_jwt_spiffeid-pretty", state: stateBefore},
		{name: "agent_api_fetch_jwt_spiffeid-json", state: stateBefore},
		{name: "agent_api_fetch_jwt_no_audience-pretty", state: stateBefore},
		{name: "agent_api_fetch_jwt_unknown_spiffeid-pretty", state: stateBefore},
		{name: "agent_api_fetch_jwt_format_deprecated", state: stateBefore},
		{name: "agent_api_validate_jwt-pretty", state: stateBefore},
		{name: "agent_api_validate_jwt-json", state: stateBefore},
		{name: "agent_api_validate_jwt_bad_token-pretty", state: stateBefore},
		{name: "agent_api_validate_jwt_bad_token-json", state: stateBefore},
		{name: "agent_api_validate_jwt_wrong_audience-pretty", state: stateBefore},
		{name: "agent_api_validate_jwt_sig_padding_bits_changed-pretty", state: stateBefore},
		{name: "agent_api_validate_jwt_missing_svid-pretty", state: stateBefore},
		{name: "agent_api_validate_jwt_missing_audience-pretty", state: stateBefore},
		{name: "agent_api_validate_jwt_bad_signature-pretty", state: stateBefore},
		{name: "agent_api_validate_jwt_bad_signature-json", state: stateBefore},
		{name: "agent_api_validate_jwt_unknown_kid-pretty", state: stateBefore},
		{name: "agent_api_validate_jwt_revoked_key-pretty", state: stateAfter},
		{name: "agent_healthcheck_ok", state: stateBefore},
		{name: "agent_healthcheck_verbose", state: stateBefore},
		{name: "agent_healthcheck_shallow", state: stateBefore},
		{name: "agent_healthcheck_shallow_verbose", state: stateBefore},
		{name: "agent_healthcheck_after_rotation", state: stateAfter},
		{name: "agent_healthcheck_server_down-verbose", state: stateAfter},
		{name: "agent_healthcheck_missing_socket", state: stateNone},
		{name: "agent_healthcheck_missing_socket_verbose", state: stateNone},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := loadGolden(t, tt.name)
			dir := tempDir(t)
			if tt.state != stateNone {
				dir, _ = startFakeWorkloadAPI(t, goldenAgent(t, tt.state))
			}
			got := runCLI(t.Context(), goldenClock(t, g.stdout), argsWithRun(g.args, dir)...)
			wantOut, wantErr := withRun(g.stdout, dir), withRun(g.stderr, dir)
			if tt.sorted {
				wantOut, got.stdout = normalizeFederatedOrder(wantOut), normalizeFederatedOrder(got.stdout)
			}
			assertResult(t, got, result{code: g.exit, stdout: wantOut, stderr: wantErr})
		})
	}
}

// TestGoldenDefaultSocket replays the recordings that used the default
// socket path; they only apply where no agent listens there.
func TestGoldenDefaultSocket(t *testing.T) {
	if _, err := os.Stat(defaultSocketPath); err == nil {
		t.Skipf("%s exists on this machine", defaultSocketPath)
	}
	for _, name := range []string{"agent_healthcheck_default_socket_missing", "cli_agent_unknown_subcommand"} {
		t.Run(name, func(t *testing.T) {
			g := loadGolden(t, name)
			dir := tempDir(t)
			got := runCLI(t.Context(), time.Now, argsWithRun(g.args, dir)...)
			assertResult(t, got, result{code: g.exit, stdout: g.stdout, stderr: g.stderr})
		})
	}
}

// TestGoldenWrite replays `api fetch x509 -write DIR` and compares the files
// with the ones real SPIRE wrote (certificates and bundles byte for byte; the
// recording kept no private keys, so those are compared with the response).
func TestGoldenWrite(t *testing.T) {
	old := syscall.Umask(0o022) // the capture's umask
	t.Cleanup(func() { syscall.Umask(old) })

	g := loadGolden(t, "agent_api_fetch_x509_write-pretty")
	fake := goldenAgent(t, stateBefore)
	dir, _ := startFakeWorkloadAPI(t, fake)
	outDir := filepath.Join(dir, "svid-out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	got := runCLI(t.Context(), goldenClock(t, g.stdout), argsWithRun(g.args, dir)...)
	want := result{code: g.exit, stdout: normalizeFederatedOrder(withRun(g.stdout, dir)), stderr: g.stderr}
	got.stdout = normalizeFederatedOrder(got.stdout)
	assertResult(t, got, want)

	refDir := filepath.Join(goldenDir, "agent_api_fetch_x509_write-pretty.dir")
	refFiles, err := os.ReadDir(refDir)
	if err != nil {
		t.Fatal(err)
	}
	gotFiles, err := os.ReadDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	// Recorded: 12 certificate files (0644) plus three keys (0600) not copied.
	if len(gotFiles) != len(refFiles)+3 {
		t.Errorf("wrote %d files, want %d", len(gotFiles), len(refFiles)+3)
	}
	federated := map[string][]string{} // svid index -> contents, sorted
	wantFederated := map[string][]string{}
	for _, ref := range refFiles {
		wantData, err := os.ReadFile(filepath.Join(refDir, ref.Name()))
		if err != nil {
			t.Fatal(err)
		}
		gotData := readFileMode(t, filepath.Join(outDir, ref.Name()), 0o644)
		if idx, ok := strings.CutPrefix(ref.Name(), "federated_bundle."); ok {
			idx = idx[:strings.IndexByte(idx, '.')]
			wantFederated[idx] = append(wantFederated[idx], string(wantData))
			federated[idx] = append(federated[idx], string(gotData))
			continue
		}
		if !bytes.Equal(gotData, wantData) {
			t.Errorf("%s differs from SPIRE's:\n%s\nwant:\n%s", ref.Name(), gotData, wantData)
		}
	}
	for idx, want := range wantFederated {
		slices.Sort(want)
		slices.Sort(federated[idx])
		if !slices.Equal(federated[idx], want) {
			t.Errorf("federated bundles of SVID %s differ from SPIRE's", idx)
		}
	}
	for i, svid := range fake.x509.GetSvids() {
		keyPEM := readFileMode(t, filepath.Join(outDir, "svid."+strconv.Itoa(i)+".key"), 0o600)
		block, rest := pem.Decode(keyPEM)
		if block == nil || block.Type != "PRIVATE KEY" || len(rest) != 0 || !bytes.Equal(block.Bytes, svid.GetX509SvidKey()) {
			t.Errorf("svid.%d.key is not the PKCS#8 key of the response:\n%s", i, keyPEM)
		}
	}
}

// TestGoldenWatch replays `api watch` interrupted after the first update:
// the update block, then the Canceled error twice (once from the watcher,
// once as the final error), exit 1.
func TestGoldenWatch(t *testing.T) {
	g := loadGolden(t, "agent_api_watch_sigint_6s")
	dir, _ := startFakeWorkloadAPI(t, goldenAgent(t, stateBefore))
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	e := &env{stdout: stdout, stderr: stderr, now: goldenClock(t, g.stdout)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() { done <- e.run(ctx, argsWithRun(g.args, dir)) }()
	stdout.waitFor(t.Context(), t, "the first update", func(s string) bool { return len(s) >= len(g.stdout) })
	cancel() // what SIGINT does through the binary's signal context
	code := <-done
	assertResult(t, result{code: code, stdout: stdout.String(), stderr: stderr.String()},
		result{code: g.exit, stdout: g.stdout, stderr: g.stderr})
}

func readFileMode(tb testing.TB, path string, mode os.FileMode) []byte {
	tb.Helper()
	info, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	if info.Mode().Perm() != mode {
		tb.Errorf("%s: mode %o, want %o", filepath.Base(path), info.Mode().Perm(), mode)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func assertResult(tb testing.TB, got, want result) {
	tb.Helper()
	if got.code != want.code {
		tb.Errorf("exit code %d, want %d", got.code, want.code)
	}
	if got.stdout != want.stdout {
		tb.Errorf("stdout:\n%s\nwant:\n%s", got.stdout, want.stdout)
	}
	if got.stderr != want.stderr {
		tb.Errorf("stderr:\n%s\nwant:\n%s", got.stderr, want.stderr)
	}
}
