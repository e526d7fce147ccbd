package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/doctor"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

func TestDoctorDurationFlag(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "3600", want: time.Hour}, {in: "90s", want: 90 * time.Second}, {in: "1h30m", want: 90 * time.Minute}, {in: "soon", err: true},
	} {
		var d durationFlag
		err := d.Set(tt.in)
		if (err != nil) != tt.err || (!tt.err && time.Duration(d) != tt.want) {
			t.Errorf("%q: %v %v", tt.in, time.Duration(d), err)
		}
	}
}

func TestShellLine(t *testing.T) {
	got := shellLine("spire-server", "entry", "create", "-spiffeID", "spiffe://td/ns/<namespace>/sa/x", "-selector", "k8s:ns:<namespace>",
		"-selector", "docker:label:a b", "-hint", "it's", "-x", "")
	want := `spire-server entry create -spiffeID spiffe://td/ns/<namespace>/sa/x -selector k8s:ns:<namespace> -selector 'docker:label:a b' -hint 'it'\''s' -x ''`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// doctorCA is a self-signed X.509 authority valid from notBefore to notAfter.
func doctorCA(t *testing.T, notBefore, notAfter time.Time) (id string, der []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	skid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: skid}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(skid), der
}

// healthyPlane answers every doctor RPC as a healthy server at refTime:
// three entries, one agent half-way through its hour, a 24 h CA 2 h old.
func healthyPlane(t *testing.T, f *fakeAPI) {
	t.Helper()
	f.on("Check", &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING})
	f.on("CountEntries", &entryv1.CountEntriesResponse{Count: 3})
	f.on("ListEntries", &entryv1.ListEntriesResponse{})
	f.on("ListAgents", &agentv1.ListAgentsResponse{Agents: []*types.Agent{
		{Id: hive("/spire/agent/join_token/t1"), AttestationType: "join_token", X509SvidExpiresAt: refTime.Add(50 * time.Minute).Unix()},
	}})
	caID, der := doctorCA(t, refTime.Add(-2*time.Hour), refTime.Add(22*time.Hour))
	f.on("GetBundle", &types.Bundle{TrustDomain: "neural-hive.local", X509Authorities: []*types.X509Certificate{{Asn1: der}}})
	f.on("GetX509AuthorityState", &localauthorityv1.GetX509AuthorityStateResponse{Active: &localauthorityv1.AuthorityState{AuthorityId: caID, ExpiresAt: refTime.Add(22 * time.Hour).Unix()}})
	f.on("GetJWTAuthorityState", &localauthorityv1.GetJWTAuthorityStateResponse{Active: &localauthorityv1.AuthorityState{AuthorityId: "jwtkey", ExpiresAt: refTime.Add(22 * time.Hour).Unix()}})
}

// doctorFindings runs doctor -output json and returns its exit code and findings by check.
func doctorFindings(t *testing.T, args ...string) (int, map[string][]doctor.Finding, string) {
	t.Helper()
	got := runCLI(testEnv(), nil, append([]string{"doctor", "-output", "json"}, args...)...)
	if got.stderr != "" {
		t.Fatalf("stderr: %s", got.stderr)
	}
	var report doctor.Report
	if err := json.Unmarshal([]byte(got.stdout), &report); err != nil {
		t.Fatalf("%v: %s", err, got.stdout)
	}
	byCheck := map[string][]doctor.Finding{}
	for _, f := range report.Findings {
		byCheck[f.Check] = append(byCheck[f.Check], f)
	}
	return got.exit, byCheck, got.stdout
}

func TestServerDoctor(t *testing.T) {
	const workerID = "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"
	recreate := "Se entry SPIFFE ausente: Recriar entry\n  spire-server entry create -spiffeID " + workerID +
		" -parentID spiffe://neural-hive.local/ns/spire-system/sa/spire-agent -selector k8s:ns:neural-hive-execution -selector k8s:sa:worker-agents -ttl 3600"
	agentAt := func(left time.Duration, mut func(*types.Agent)) *agentv1.ListAgentsResponse {
		a := &types.Agent{Id: hive("/spire/agent/join_token/t1"), AttestationType: "join_token", X509SvidExpiresAt: refTime.Add(left).Unix()}
		if mut != nil {
			mut(a)
		}
		return &agentv1.ListAgentsResponse{Agents: []*types.Agent{a}}
	}
	for _, tt := range []struct {
		name   string
		args   []string
		setup  func(t *testing.T, f *fakeAPI)
		exit   int
		check  string // the finding under test
		status doctor.Status
		detail string // substring
		resol  string // substring of its resolution
		sent   func(t *testing.T, f *fakeAPI)
	}{
		{name: "ok/healthy plane", check: "server.health", status: doctor.OK, detail: "Server is healthy."},
		{name: "ok/entries counted", check: "server.entries", status: doctor.OK, detail: "3 registration entries"},
		{name: "ok/agents on time", check: "server.agents", status: doctor.OK, detail: "1 attested agent, 1 renewing on time"},
		{name: "ok/CA", check: "server.ca.x509", status: doctor.OK, detail: "expires at 2026-12-01T04:00:00Z (in 22h0m0s)"},
		{name: "ok/JWT key", check: "server.ca.jwt", status: doctor.OK, detail: "active JWT authority jwtkey"},
		{name: "fail/missing entry for a SPIFFE ID", args: []string{"-spiffeID", workerID}, exit: 1,
			check: "server.entry", status: doctor.Crit, detail: "no entry for " + workerID, resol: recreate,
			sent: func(t *testing.T, f *fakeAPI) {
				req := f.sent("ListEntries")[0].(*entryv1.ListEntriesRequest)
				if !proto.Equal(req.Filter.BySpiffeId, hive("/ns/neural-hive-execution/sa/worker-agents")) || req.Filter.BySelectors != nil {
					t.Errorf("filter %v", req.Filter)
				}
			}},
		{name: "fail/missing entry for selectors", args: []string{"-selector", "k8s:ns:neural-hive-execution", "-selector", "k8s:sa:worker-agents"}, exit: 1,
			check: "server.entry", status: doctor.Crit, detail: "no entry for selectors [k8s:ns:neural-hive-execution k8s:sa:worker-agents]", resol: recreate,
			sent: func(t *testing.T, f *fakeAPI) {
				req := f.sent("ListEntries")[0].(*entryv1.ListEntriesRequest)
				if m := req.Filter.BySelectors; m == nil || m.Match != types.SelectorMatch_MATCH_SUBSET || len(m.Selectors) != 2 {
					t.Errorf("filter %v", req.Filter)
				}
			}},
		{name: "fail/entry for the ID has other selectors", args: []string{"-spiffeID", workerID, "-selector", "unix:uid:1000"}, exit: 1,
			setup: func(t *testing.T, f *fakeAPI) {
				f.on("ListEntries", responder(func(m proto.Message) (proto.Message, error) {
					if m.(*entryv1.ListEntriesRequest).Filter.BySelectors != nil {
						return &entryv1.ListEntriesResponse{}, nil
					}
					return &entryv1.ListEntriesResponse{Entries: []*types.Entry{{Id: "e1", SpiffeId: hive("/ns/neural-hive-execution/sa/worker-agents"),
						ParentId: hive("/spire/agent/join_token/t1"), Selectors: []*types.Selector{{Type: "unix", Value: "uid:0"}}}}}, nil
				}))
			},
			check: "server.entry", status: doctor.Crit, detail: "has 1 entry with other selectors, e.g. [unix:uid:0]",
			resol: "entry create -spiffeID " + workerID + " -parentID spiffe://neural-hive.local/spire/agent/join_token/t1 -selector unix:uid:1000 -ttl 3600 -socketPath /"},
		{name: "ok/entry found", args: []string{"-spiffeID", workerID},
			setup: func(t *testing.T, f *fakeAPI) {
				f.on("ListEntries", &entryv1.ListEntriesResponse{Entries: []*types.Entry{{Id: "e1", SpiffeId: hive("/ns/neural-hive-execution/sa/worker-agents"),
					ParentId: hive("/ns/spire-system/sa/spire-agent"), Selectors: []*types.Selector{{Type: "k8s", Value: "ns:neural-hive-execution"}}}}})
			},
			check: "server.entry", status: doctor.OK, detail: "entry e1 issues " + workerID + " to [k8s:ns:neural-hive-execution] under spiffe://neural-hive.local/ns/spire-system/sa/spire-agent"},
		{name: "warn/no entries", setup: func(t *testing.T, f *fakeAPI) { f.on("CountEntries", &entryv1.CountEntriesResponse{}) },
			check: "server.entries", status: doctor.Warn, detail: "no registration entries", resol: "Criar Nova Entry SPIFFE"},
		{name: "warn/agent not renewed at half-life", setup: func(t *testing.T, f *fakeAPI) { f.on("ListAgents", agentAt(10*time.Minute, nil)) },
			check: "server.agent", status: doctor.Warn, detail: "(in 10m0s) and was not renewed at half-life",
			resol: "kubectl rollout restart daemonset/spire-agent -n spire-system"},
		{name: "ok/short agent ttl judged by -agentTTL", args: []string{"-agentTTL", "30s"},
			setup: func(t *testing.T, f *fakeAPI) { f.on("ListAgents", agentAt(20*time.Second, nil)) },
			check: "server.agents", status: doctor.OK, detail: "1 renewing on time"},
		{name: "warn/short agent ttl not renewed", args: []string{"-agentTTL", "30s", "-threshold", "20"},
			setup: func(t *testing.T, f *fakeAPI) { f.on("ListAgents", agentAt(8*time.Second, nil)) },
			check: "server.agent", status: doctor.Warn, detail: "was not renewed at half-life"},
		{name: "fail/agent down with an expired SVID", exit: 1,
			setup: func(t *testing.T, f *fakeAPI) { f.on("ListAgents", agentAt(-time.Minute, nil)) },
			check: "server.agent", status: doctor.Crit, detail: "SVID expired at 2026-11-30T05:59:00Z",
			resol: "spire-server token generate -spiffeID spiffe://neural-hive.local/ns/spire-system/sa/spire-agent"},
		{name: "warn/banned agent", setup: func(t *testing.T, f *fakeAPI) {
			f.on("ListAgents", agentAt(-time.Hour, func(a *types.Agent) { a.Banned = true }))
		},
			check: "server.agent", status: doctor.Warn, detail: "is banned",
			resol: "spire-server agent evict -spiffeID spiffe://neural-hive.local/spire/agent/join_token/t1"},
		{name: "warn/no agents", setup: func(t *testing.T, f *fakeAPI) { f.on("ListAgents", &agentv1.ListAgentsResponse{}) },
			check: "server.agents", status: doctor.Warn, detail: "no attested agents"},
		{name: "fail/CA under the threshold", exit: 1, setup: func(t *testing.T, f *fakeAPI) {
			f.on("GetX509AuthorityState", &localauthorityv1.GetX509AuthorityStateResponse{
				Active:   &localauthorityv1.AuthorityState{AuthorityId: "abc", ExpiresAt: refTime.Add(30 * time.Minute).Unix()},
				Prepared: &localauthorityv1.AuthorityState{AuthorityId: "def", ExpiresAt: refTime.Add(24 * time.Hour).Unix()}})
		},
			check: "server.ca.x509", status: doctor.Crit, detail: "expires at 2026-11-30T06:30:00Z (in 30m0s)",
			resol: "spire-server localauthority x509 activate -authorityID def"},
		{name: "warn/CA past its activation point", setup: func(t *testing.T, f *fakeAPI) {
			caID, der := doctorCA(t, refTime.Add(-21*time.Hour), refTime.Add(3*time.Hour))
			f.on("GetBundle", &types.Bundle{TrustDomain: "neural-hive.local", X509Authorities: []*types.X509Certificate{{Asn1: der}}})
			f.on("GetX509AuthorityState", &localauthorityv1.GetX509AuthorityStateResponse{Active: &localauthorityv1.AuthorityState{AuthorityId: caID, ExpiresAt: refTime.Add(3 * time.Hour).Unix()}})
		},
			check: "server.ca.x509", status: doctor.Warn, detail: "past the point where rotation activates its successor",
			resol: "spire-server localauthority x509 prepare"},
		{name: "fail/no active JWT key", exit: 1, setup: func(t *testing.T, f *fakeAPI) {
			f.on("GetJWTAuthorityState", &localauthorityv1.GetJWTAuthorityStateResponse{})
		},
			check: "server.ca.jwt", status: doctor.Crit, detail: "no active JWT authority", resol: "localauthority jwt prepare"},
		{name: "fail/server not serving", exit: 1, setup: func(t *testing.T, f *fakeAPI) {
			f.on("Check", &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_NOT_SERVING})
		},
			check: "server.health", status: doctor.Crit, detail: "server reports NOT_SERVING", resol: "healthcheck -verbose"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, sock := apiDir(t)
			healthyPlane(t, f)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			exit, byCheck, out := doctorFindings(t, append(tt.args, sock...)...)
			if exit != tt.exit {
				t.Errorf("exit %d, want %d\n%s", exit, tt.exit, out)
			}
			var match *doctor.Finding
			for i, got := range byCheck[tt.check] {
				if strings.Contains(got.Detail, tt.detail) {
					match = &byCheck[tt.check][i]
				}
			}
			if match == nil {
				t.Fatalf("no %s finding with %q in:\n%s", tt.check, tt.detail, out)
			}
			if match.Status != tt.status || !strings.Contains(match.Resolution, tt.resol) {
				t.Errorf("finding %+v, want status %s and resolution with %q", *match, tt.status, tt.resol)
			}
			if tt.status == doctor.OK && match.Resolution != "" {
				t.Errorf("OK finding with a resolution: %q", match.Resolution)
			}
			if tt.exit == 0 {
				for _, fs := range byCheck {
					for _, f := range fs {
						if f.Status == doctor.Crit {
							t.Errorf("unexpected CRIT %+v", f)
						}
					}
				}
			}
			if tt.sent != nil {
				tt.sent(t, f)
			}
		})
	}
}

// TestServerDoctorUnreachable: with no server on the socket, only the
// health finding is printed, critical, with the runbook's checks.
func TestServerDoctorUnreachable(t *testing.T) {
	dir := t.TempDir()
	got := runCLI(testEnv(), nil, "doctor", "-socketPath", filepath.Join(dir, "none.sock"), "-timeout", "2s")
	if got.exit != 1 || got.stderr != "" {
		t.Fatalf("exit %d stderr %q", got.exit, got.stderr)
	}
	lines := strings.Split(got.stdout, "\n")
	if !strings.HasPrefix(lines[0], "CRIT  server.health: server does not answer on "+filepath.Join(dir, "none.sock")) ||
		lines[1] != "      Verificar Saude do SPIRE Server:" ||
		lines[2] != "        spire-server healthcheck -verbose -socketPath "+filepath.Join(dir, "none.sock") ||
		!strings.HasSuffix(got.stdout, "\nSummary: CRIT (0 OK, 0 WARN, 1 CRIT)\n") {
		t.Errorf("output:\n%s", got.stdout)
	}
}
