package cli

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// x509Fixture is an agent answer built from test CAs: "web" chains through
// an intermediate and has a hint, "db" is signed by the root directly; both
// trust domain bundles of partner.example and partner2.example are federated.
type x509Fixture struct {
	ca, partner, partner2 *testCA
	resp                  *workload.X509SVIDResponse
}

func newX509Fixture(tb testing.TB, now time.Time) *x509Fixture {
	tb.Helper()
	f := &x509Fixture{
		ca:       newTestCA(tb, "neural-hive.local", now),
		partner:  newTestCA(tb, "partner.example", now.Add(-time.Hour)),
		partner2: newTestCA(tb, "partner2.example", now.Add(-2*time.Hour)),
	}
	db := f.ca.svid("/workload/db", "")
	web := f.ca.withIntermediate().svid("/workload/web", "web-hint")
	f.resp = &workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{web, db},
		FederatedBundles: map[string][]byte{
			"spiffe://partner2.example": f.partner2.root.Raw,
			"spiffe://partner.example":  f.partner.root.Raw,
		},
	}
	return f
}

// pretty is the expected `api fetch x509` (withHint) or `api watch` block
// output for the fixture, computed from its certificates.
func (f *x509Fixture) pretty(elapsed time.Duration, fetch bool) string {
	fed := func(label string, ca *testCA) string {
		return fmt.Sprintf("[%s] CA #1 Valid After:\t%v\n[%s] CA #1 Valid Until:\t%v\n", label, ca.root.NotBefore, label, ca.root.NotAfter)
	}
	p1, p2 := "partner.example", "partner2.example"
	if fetch {
		p1, p2 = "spiffe://"+p1, "spiffe://"+p2
	}
	federated := fed(p1, f.partner) + fed(p2, f.partner2)
	ca := fmt.Sprintf("CA #1 Valid After:\t%v\nCA #1 Valid Until:\t%v\n", f.ca.root.NotBefore, f.ca.root.NotAfter)
	hint := ""
	if fetch {
		hint = "Hint:\t\t\tweb-hint\n"
	}
	leaf := func(svid *workload.X509SVID) (string, string) {
		chain := mustParseCerts(svid.GetX509Svid())
		return chain[0].NotBefore.String(), chain[0].NotAfter.String()
	}
	webFrom, webTo := leaf(f.resp.Svids[0])
	dbFrom, dbTo := leaf(f.resp.Svids[1])
	return fmt.Sprintf("Received 2 svids after %s\n", elapsed) +
		"\nSPIFFE ID:\t\tspiffe://neural-hive.local/workload/web\n" + hint +
		"SVID Valid After:\t" + webFrom + "\nSVID Valid Until:\t" + webTo + "\n" +
		fmt.Sprintf("Intermediate #1 Valid After:\t%v\nIntermediate #1 Valid Until:\t%v\n", f.ca.inter.NotBefore, f.ca.inter.NotAfter) +
		ca + federated +
		"\nSPIFFE ID:\t\tspiffe://neural-hive.local/workload/db\n" +
		"SVID Valid After:\t" + dbFrom + "\nSVID Valid Until:\t" + dbTo + "\n" +
		ca + federated + "\n"
}

func TestFetchX509(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	fx := newX509Fixture(t, now)
	fake := &fakeWorkloadAPI{x509: fx.resp}
	_, socket := startFakeWorkloadAPI(t, fake)
	clock := func() func() time.Time { return steppingClock(now, 1500*time.Microsecond) }

	t.Run("ok/pretty", func(t *testing.T) {
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-socketPath", socket)
		assertResult(t, got, result{stdout: fx.pretty(1500*time.Microsecond, true)})
	})
	t.Run("ok/bare api fetch is fetch x509", func(t *testing.T) {
		got := runCLI(t.Context(), clock(), "api", "fetch", "-socketPath", socket)
		assertResult(t, got, result{stdout: fx.pretty(1500*time.Microsecond, true)})
	})
	t.Run("ok/json", func(t *testing.T) {
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-socketPath", socket, "-output", "json", "-silent")
		b64 := base64.StdEncoding.EncodeToString
		svid := func(s *workload.X509SVID) string {
			return fmt.Sprintf(`{"bundle":%q,"hint":%q,"spiffe_id":%q,"x509_svid":%q,"x509_svid_key":%q}`,
				b64(s.Bundle), s.Hint, s.SpiffeId, b64(s.X509Svid), b64(s.X509SvidKey))
		}
		want := fmt.Sprintf(`{"crl":[],"federated_bundles":{"spiffe://partner.example":%q,"spiffe://partner2.example":%q},"svids":[%s,%s]}`+"\n",
			b64(fx.partner.root.Raw), b64(fx.partner2.root.Raw), svid(fx.resp.Svids[0]), svid(fx.resp.Svids[1]))
		assertResult(t, got, result{stdout: want})
	})
	t.Run("ok/silent", func(t *testing.T) {
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-socketPath", socket, "-silent")
		assertResult(t, got, result{})
	})
	t.Run("ok/relative socket path", func(t *testing.T) {
		t.Chdir(filepath.Dir(filepath.Dir(socket)))
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-socketPath", "a/api.sock", "-silent")
		assertResult(t, got, result{})
	})
	t.Run("ok/no timeout", func(t *testing.T) {
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-socketPath", socket, "-silent", "-timeout", "0")
		assertResult(t, got, result{})
	})
	t.Run("fail/bad timeout", func(t *testing.T) {
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-socketPath", socket, "-timeout", "soon")
		wantErr := `invalid value "soon" for flag -timeout: time: invalid duration "soon"`
		assertFlagError(t, got, wantErr, "Usage of fetch x509:\n", true)
	})
	t.Run("fail/output set twice", func(t *testing.T) {
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-socketPath", socket, "-output", "json", "-output", "pretty")
		wantErr := `invalid value "pretty" for flag -output: the output format has already been set to "json"`
		assertFlagError(t, got, wantErr, "Usage of fetch x509:\n", true)
	})
	t.Run("fail/unknown flag", func(t *testing.T) {
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-ttl", "1")
		assertFlagError(t, got, "flag provided but not defined: -ttl", "Usage of fetch x509:\n", true)
	})
	t.Run("fail/agent refuses", func(t *testing.T) {
		_, sock := startFakeWorkloadAPI(t, &fakeWorkloadAPI{x509: &workload.X509SVIDResponse{}})
		got := runCLI(t.Context(), clock(), "api", "fetch", "x509", "-socketPath", sock)
		assertResult(t, got, result{code: 1, stderr: "workload response contains no svids\n"})
	})
}

// TestFetchX509Unverifiable checks that pretty output verifies each SVID
// against its trust domain's bundle (and fails naming the SVID) while json
// prints the response as received, as SPIRE does.
func TestFetchX509Unverifiable(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	fx := newX509Fixture(t, now)
	stranger := newNamedTestCA(t, "neural-hive.local", "other root", now).svid("/workload/stray", "")
	stranger.Bundle = fx.ca.root.Raw // chained to another CA than the bundle's
	resp := &workload.X509SVIDResponse{Svids: []*workload.X509SVID{fx.resp.Svids[1], stranger}}
	_, socket := startFakeWorkloadAPI(t, &fakeWorkloadAPI{x509: resp})

	got := runCLI(t.Context(), steppingClock(now, 0), "api", "fetch", "x509", "-socketPath", socket)
	assertResult(t, got, result{code: 1, stderr: `"spiffe://neural-hive.local/workload/stray" SVID failed verification against bundle: ` +
		"x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority\n"})

	got = runCLI(t.Context(), steppingClock(now, 0), "api", "fetch", "x509", "-socketPath", socket, "-output", "json")
	if got.code != 0 || !strings.Contains(got.stdout, `"spiffe_id":"spiffe://neural-hive.local/workload/stray"`) {
		t.Errorf("json: %+v", got)
	}

	// An SVID that expired by the CLI's clock fails too.
	got = runCLI(t.Context(), steppingClock(now.Add(2*time.Hour), 0), "api", "fetch", "x509", "-socketPath", socket)
	if got.code != 1 || !strings.Contains(got.stderr, `"spiffe://neural-hive.local/workload/db" SVID failed verification against bundle: `) {
		t.Errorf("expired: %+v", got)
	}
}

func TestFetchX509Write(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	now := time.Now().Truncate(time.Second)
	fx := newX509Fixture(t, now)
	dir, socket := startFakeWorkloadAPI(t, &fakeWorkloadAPI{x509: fx.resp})
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stale key file with a wide mode is narrowed to 0600.
	if err := os.WriteFile(filepath.Join(out, "svid.0.key"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}

	got := runCLI(t.Context(), steppingClock(now, 0), "api", "fetch", "x509", "-socketPath", socket, "-silent", "-write", out)
	var want strings.Builder
	for i := range 2 {
		fmt.Fprintf(&want, "Writing SVID #%d to file %s/svid.%d.pem.\n", i, out, i)
		fmt.Fprintf(&want, "Writing key #%d to file %s/svid.%d.key.\n", i, out, i)
		fmt.Fprintf(&want, "Writing bundle #%d to file %s/bundle.%d.pem.\n", i, out, i)
		fmt.Fprintf(&want, "Writing federated bundle #0 for trust domain spiffe://partner.example to file %s/federated_bundle.%d.0.pem.\n", out, i)
		fmt.Fprintf(&want, "Writing federated bundle #1 for trust domain spiffe://partner2.example to file %s/federated_bundle.%d.1.pem.\n", out, i)
	}
	assertResult(t, got, result{stdout: want.String()})

	certPEM := func(ders ...[]byte) string {
		var s string
		for _, der := range ders {
			for _, c := range mustParseCerts(der) {
				s += string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
			}
		}
		return s
	}
	for i, svid := range fx.resp.Svids {
		files := map[string]struct {
			mode os.FileMode
			data string
		}{
			"svid.%d.pem":               {0o644, certPEM(svid.X509Svid)},
			"svid.%d.key":               {0o600, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: svid.X509SvidKey}))},
			"bundle.%d.pem":             {0o644, certPEM(svid.Bundle)},
			"federated_bundle.%d.0.pem": {0o644, certPEM(fx.partner.root.Raw)},
			"federated_bundle.%d.1.pem": {0o644, certPEM(fx.partner2.root.Raw)},
		}
		for name, want := range files {
			name = fmt.Sprintf(name, i)
			if data := readFileMode(t, filepath.Join(out, name), want.mode); string(data) != want.data {
				t.Errorf("%s:\n%s\nwant:\n%s", name, data, want.data)
			}
		}
	}
	if svid1 := mustParseCerts(fx.resp.Svids[0].X509Svid); len(svid1) != 2 {
		t.Fatalf("fixture: web chain has %d certificates", len(svid1))
	}

	t.Run("fail/missing directory", func(t *testing.T) {
		missing := filepath.Join(dir, "nosuch", "sub")
		got := runCLI(t.Context(), steppingClock(now, 0), "api", "fetch", "x509", "-socketPath", socket, "-silent", "-write", missing)
		assertResult(t, got, result{code: 1,
			stdout: "Writing SVID #0 to file " + missing + "/svid.0.pem.\n",
			stderr: "open " + missing + "/svid.0.pem: no such file or directory\n"})
	})
	t.Run("ok/json writes nothing", func(t *testing.T) {
		empty := filepath.Join(dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			t.Fatal(err)
		}
		got := runCLI(t.Context(), steppingClock(now, 0), "api", "fetch", "x509", "-socketPath", socket, "-output", "json", "-write", empty)
		if got.code != 0 || got.stderr != "" || !strings.HasPrefix(got.stdout, `{"crl":[]`) {
			t.Errorf("%+v", got)
		}
		if entries, _ := os.ReadDir(empty); len(entries) != 0 {
			t.Errorf("json output wrote %d files", len(entries))
		}
	})
}

func TestFetchX509Errors(t *testing.T) {
	dir := tempDir(t)
	missing := filepath.Join(dir, "a", "api.sock")
	got := runCLI(t.Context(), time.Now, "api", "fetch", "x509", "-socketPath", missing)
	assertResult(t, got, result{code: 1, stderr: `rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial unix ` + missing + `: connect: no such file or directory"` + "\n"})

	_, socket := startFakeWorkloadAPI(t, &fakeWorkloadAPI{}) // never answers
	got = runCLI(t.Context(), time.Now, "api", "fetch", "x509", "-socketPath", socket, "-timeout", "50ms")
	assertResult(t, got, result{code: 1, stderr: "rpc error: code = DeadlineExceeded desc = context deadline exceeded\n"})

	ctx, cancel := context.WithCancel(t.Context())
	cancel() // as SIGINT would
	got = runCLI(ctx, time.Now, "api", "fetch", "x509", "-socketPath", socket)
	if got.code != 1 || !strings.HasPrefix(got.stderr, "rpc error: code = Canceled desc = ") {
		t.Errorf("cancelled: %+v", got)
	}
}

func TestFetchJWT(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := newTestCA(t, "neural-hive.local", now)
	partner := newTestCA(t, "partner.example", now)
	var requests []*workload.JWTSVIDRequest
	fake := &fakeWorkloadAPI{
		jwtBundles: &workload.JWTBundlesResponse{Bundles: map[string][]byte{
			"spiffe://partner.example":   partner.jwks(),
			"spiffe://neural-hive.local": ca.jwks(),
		}},
	}
	tokens := map[string]string{}
	fake.fetchJWT = func(req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
		requests = append(requests, req)
		if req.SpiffeId == "spiffe://neural-hive.local/workload/nosuch" {
			return nil, status.Error(codes.PermissionDenied, "no identity issued")
		}
		resp := &workload.JWTSVIDResponse{}
		for _, p := range []struct{ path, hint string }{{"/workload/web", "web-hint"}, {"/workload/db", ""}} {
			id := "spiffe://neural-hive.local" + p.path
			if req.SpiffeId != "" && req.SpiffeId != id {
				continue
			}
			tok := ca.jwtSVID(p.path, req.Audience)
			tokens[id] = tok
			resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: id, Svid: tok, Hint: p.hint})
		}
		return resp, nil
	}
	_, socket := startFakeWorkloadAPI(t, fake)

	t.Run("ok/pretty", func(t *testing.T) {
		requests = nil
		got := runCLI(t.Context(), time.Now, "api", "fetch", "jwt", "-socketPath", socket, "-audience", "x")
		want := "token(spiffe://neural-hive.local/workload/web):\n\t" + tokens["spiffe://neural-hive.local/workload/web"] + "\n" +
			"hint(spiffe://neural-hive.local/workload/web):\n\tweb-hint\n" +
			"token(spiffe://neural-hive.local/workload/db):\n\t" + tokens["spiffe://neural-hive.local/workload/db"] + "\n" +
			"bundle(spiffe://neural-hive.local):\n\t" + string(ca.jwks()) + "\n" +
			"bundle(spiffe://partner.example):\n\t" + string(partner.jwks()) + "\n"
		assertResult(t, got, result{stdout: want})
		if calls := fake.callLog(); !slices.Equal(calls[len(calls)-2:], []string{"FetchJWTBundles", "FetchJWTSVID"}) {
			t.Errorf("calls %v, want bundles then SVIDs", calls)
		}
	})
	t.Run("ok/json", func(t *testing.T) {
		got := runCLI(t.Context(), time.Now, "api", "fetch", "jwt", "-socketPath", socket, "-audience", "x", "-spiffeID", "spiffe://neural-hive.local/workload/db", "-output", "json")
		b64 := base64.StdEncoding.EncodeToString
		want := fmt.Sprintf(`[{"svids":[{"hint":"","spiffe_id":"spiffe://neural-hive.local/workload/db","svid":%q}]},{"bundles":{"spiffe://neural-hive.local":%q,"spiffe://partner.example":%q}}]`+"\n",
			tokens["spiffe://neural-hive.local/workload/db"], b64(ca.jwks()), b64(partner.jwks()))
		assertResult(t, got, result{stdout: want})
	})
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{name: "ok/audience split on commas", args: []string{"-audience", "x,y"}, want: []string{"x", "y"}},
		{name: "ok/last audience flag wins", args: []string{"-audience", "x", "-audience", "y,z"}, want: []string{"y", "z"}},
		{name: "ok/format is output", args: []string{"-audience", "a", "-format", "json"}, want: []string{"a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			requests = nil
			got := runCLI(t.Context(), time.Now, append([]string{"api", "fetch", "jwt", "-socketPath", socket}, tt.args...)...)
			if got.code != 0 || len(requests) != 1 || !slices.Equal(requests[0].Audience, tt.want) {
				t.Fatalf("got %+v, requests %v", got, requests)
			}
		})
	}
	t.Run("fail/no audience", func(t *testing.T) {
		before := len(fake.callLog())
		got := runCLI(t.Context(), time.Now, "api", "fetch", "jwt", "-socketPath", socket)
		assertResult(t, got, result{code: 1, stderr: "audience must be specified\n"})
		if len(fake.callLog()) != before {
			t.Error("called the Workload API without an audience")
		}
	})
	t.Run("fail/no identity", func(t *testing.T) {
		got := runCLI(t.Context(), time.Now, "api", "fetch", "jwt", "-socketPath", socket, "-audience", "x", "-spiffeID", "spiffe://neural-hive.local/workload/nosuch")
		assertResult(t, got, result{code: 1, stderr: "rpc error: code = PermissionDenied desc = no identity issued\n"})
	})
	t.Run("fail/missing socket", func(t *testing.T) {
		missing := filepath.Join(tempDir(t), "api.sock")
		got := runCLI(t.Context(), time.Now, "api", "fetch", "jwt", "-socketPath", missing, "-audience", "x")
		assertResult(t, got, result{code: 1, stderr: `failed to receive JWT bundles: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial unix ` + missing + `: connect: no such file or directory"` + "\n"})
	})
}

func TestValidateJWT(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := newTestCA(t, "neural-hive.local", now)
	fake := &fakeWorkloadAPI{}
	fake.validateJWT = func(req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
		svid, err := jwtsvid.ParseAndValidate(req.Svid, ca.jwtBundle(), []string{req.Audience})
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		claims, err := structpb.NewStruct(svid.Claims)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
	}
	_, socket := startFakeWorkloadAPI(t, fake)
	token := ca.jwtSVID("/workload/web", []string{"x", "y"})
	claims := fmt.Sprintf(`{"aud":["x","y"],"exp":%d,"iat":%d,"sub":"spiffe://neural-hive.local/workload/web"}`, now.Add(5*time.Minute).Unix(), now.Unix())

	for _, tt := range []struct {
		name string
		args []string
		want result
	}{
		{name: "ok/pretty", args: []string{"-audience", "y", "-svid", token},
			want: result{stdout: "SVID is valid.\nSPIFFE ID : spiffe://neural-hive.local/workload/web\nClaims    : " + claims + "\n"}},
		{name: "ok/json", args: []string{"-audience", "x", "-svid", token, "-output", "json"},
			want: result{stdout: `{"claims":` + claims + `,"spiffe_id":"spiffe://neural-hive.local/workload/web"}` + "\n"}},
		{name: "fail/wrong audience", args: []string{"-audience", "z", "-svid", token},
			want: result{code: 1, stderr: `SVID is not valid: jwtsvid: expected audience in ["z"] (audience=["x" "y"])` + "\n"}},
		{name: "fail/not a token", args: []string{"-audience", "x", "-svid", "not.a.jwt", "-output", "json"},
			want: result{code: 1, stderr: "SVID is not valid: jwtsvid: unable to parse JWT token\n"}},
		{name: "fail/missing audience", args: []string{"-svid", token},
			want: result{code: 1, stderr: "audience must be specified\n"}},
		{name: "fail/missing svid", args: []string{"-audience", "x"},
			want: result{code: 1, stderr: "svid must be specified\n"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := runCLI(t.Context(), time.Now, append([]string{"api", "validate", "jwt", "-socketPath", socket}, tt.args...)...)
			assertResult(t, got, tt.want)
		})
	}

	t.Run("fail/other errors are not validity verdicts", func(t *testing.T) {
		missing := filepath.Join(tempDir(t), "api.sock")
		got := runCLI(t.Context(), time.Now, "api", "validate", "jwt", "-socketPath", missing, "-audience", "x", "-svid", token)
		want := `unable to validate JWT SVID: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial unix ` + missing + `: connect: no such file or directory"` + "\n"
		assertResult(t, got, result{code: 1, stderr: want})
	})
}

func TestWatch(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	fx := newX509Fixture(t, now)
	fake := &fakeWorkloadAPI{x509: fx.resp}
	_, socket := startFakeWorkloadAPI(t, fake)
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	e := &env{stdout: stdout, stderr: stderr, now: steppingClock(now, 2*time.Millisecond)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() { done <- e.run(ctx, []string{"api", "watch", "-socketPath", socket}) }()

	stdout.waitFor(t.Context(), t, "the first update", func(s string) bool { return countBlocks(s) == 1 && strings.HasSuffix(s, "\n\n") })
	fake.pushX509(fx.resp)
	stdout.waitFor(t.Context(), t, "the second update", func(s string) bool { return countBlocks(s) == 2 && strings.HasSuffix(s, "\n\n") })
	cancel()
	code := <-done

	// First block: 2ms since the watch started; second: 2ms since the first.
	want := fx.pretty(2*time.Millisecond, false) + fx.pretty(2*time.Millisecond, false)
	canceled := "rpc error: code = Canceled desc = context canceled\n"
	assertResult(t, result{code: code, stdout: stdout.String(), stderr: stderr.String()},
		result{code: 1, stdout: want, stderr: canceled + canceled})
}

func TestWatchRetriesUntilCancelled(t *testing.T) {
	missing := filepath.Join(tempDir(t), "api.sock")
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	e := &env{stdout: stdout, stderr: stderr, now: time.Now}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() { done <- e.run(ctx, []string{"api", "watch", "-socketPath", missing}) }()
	stderr.waitFor(t.Context(), t, "a connection error", func(s string) bool { return strings.Contains(s, "\n") })
	cancel()
	code := <-done
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if code != 1 || stdout.String() != "" || len(lines) < 2 ||
		!strings.HasPrefix(lines[0], "rpc error: code = Unavailable desc = connection error") || lines[len(lines)-1] != "context canceled" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

func TestHealthcheck(t *testing.T) {
	fake := &fakeWorkloadAPI{}
	_, socket := startFakeWorkloadAPI(t, fake)
	for _, tt := range []struct {
		name   string
		status healthpb.HealthCheckResponse_ServingStatus
		args   []string
		want   result
	}{
		{name: "ok", status: healthpb.HealthCheckResponse_SERVING, want: result{stdout: "Agent is healthy.\n"}},
		{name: "ok/verbose", status: healthpb.HealthCheckResponse_SERVING, args: []string{"-verbose"},
			want: result{stdout: "Checking agent health...\nAgent is healthy.\n"}},
		{name: "fail/not serving", status: healthpb.HealthCheckResponse_NOT_SERVING,
			want: result{code: 1, stderr: "Agent is unhealthy: agent returned status \"NOT_SERVING\"\n"}},
		{name: "fail/not serving verbose", status: healthpb.HealthCheckResponse_NOT_SERVING, args: []string{"-verbose", "-shallow"},
			want: result{code: 1, stdout: "Checking agent health...\n", stderr: "Agent is unhealthy: agent returned status \"NOT_SERVING\"\n"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake.health.SetServingStatus("", tt.status)
			got := runCLI(t.Context(), time.Now, append([]string{"healthcheck", "-socketPath", socket}, tt.args...)...)
			assertResult(t, got, tt.want)
		})
	}
	t.Run("fail/unknown flag", func(t *testing.T) {
		// The flag set prints the error and the usage; healthcheck adds nothing.
		got := runCLI(t.Context(), time.Now, "healthcheck", "-bogus")
		assertFlagError(t, got, "flag provided but not defined: -bogus", "Usage of health:\n", false)
	})
}

// assertFlagError checks a flag parsing failure: exit 1, nothing on stdout,
// stderr = the error, the command's usage, and (twice) the error again.
func assertFlagError(tb testing.TB, got result, msg, usageHeader string, repeated bool) {
	tb.Helper()
	want := msg + "\n" + usageHeader
	if got.code != 1 || got.stdout != "" || !strings.HasPrefix(got.stderr, want) {
		tb.Errorf("got %+v, want exit 1 and stderr starting with %q", got, want)
	}
	if repeated != strings.HasSuffix(got.stderr, "\n"+msg+"\n") {
		tb.Errorf("stderr %q: error repeated after the usage = %v, want %v", got.stderr, !repeated, repeated)
	}
}

func mustParseCerts(der []byte) []*x509.Certificate {
	certs, err := x509.ParseCertificates(der)
	if err != nil {
		panic(err)
	}
	return certs
}

// JSON sanity: printJSON drops nulls and sorts keys.
func TestPrintJSON(t *testing.T) {
	var b strings.Builder
	resp := &workload.ValidateJWTSVIDResponse{SpiffeId: "spiffe://td/x<y>"}
	if err := printJSON(&b, resp); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), `{"spiffe_id":"spiffe://td/x\u003cy\u003e"}`+"\n"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	var v any
	if err := json.Unmarshal([]byte(b.String()), &v); err != nil {
		t.Fatal(err)
	}
}
