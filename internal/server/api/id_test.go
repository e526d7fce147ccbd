package api_test

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/server/api"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// One parsing policy for every SPIFFE ID that enters through the API (ID-13).
func TestIDFromProto_SPIFFEIDGrammar(t *testing.T) {
	long := "/" + strings.Repeat("a", api.MaxIDLength-len("spiffe://example.org/"))
	for _, tt := range []struct {
		name    string
		td      string
		path    string
		wantErr string
	}{
		{name: "ok/plain", td: "example.org", path: "/workload"},
		{name: "ok/trust domain given as ID", td: "spiffe://example.org", path: "/w"},
		{name: "ok/IPv4 looking trust domain (ID-07)", td: "10.0.0.1", path: "/w"},
		{name: "ok/path is case sensitive (ID-13)", td: "example.org", path: "/Workload"},
		{name: "ok/2048 bytes (ID-12)", td: "example.org", path: long},
		{name: "ok/TD of 255 bytes (ID-12)", td: strings.Repeat("a", 255), path: "/w"},
		{name: "fail/2049 bytes (ID-12)", td: "example.org", path: long + "a", wantErr: "more than 2048"},
		{name: "fail/TD of 256 bytes (ID-12)", td: strings.Repeat("a", 256), path: "/w", wantErr: "more than 255"},
		{name: "fail/empty trust domain (ID-02)", td: "", path: "/w", wantErr: "trust domain is missing"},
		{name: "fail/upper case trust domain (ID-05, ID-13)", td: "Example.org", path: "/w", wantErr: "trust domain characters"},
		{name: "fail/port (ID-04)", td: "example.org:8080", path: "/w", wantErr: "trust domain characters"},
		{name: "fail/userinfo (ID-04)", td: "u@example.org", path: "/w", wantErr: "trust domain characters"},
		{name: "fail/IPv6 (ID-07)", td: "[::1]", path: "/w", wantErr: "trust domain characters"},
		{name: "fail/percent in host (ID-06)", td: "ex%41mple.org", path: "/w", wantErr: "trust domain characters"},
		{name: "fail/percent in path (ID-08)", td: "example.org", path: "/a/%2e", wantErr: "path segment characters"},
		{name: "fail/empty segment (ID-09)", td: "example.org", path: "/a//b", wantErr: "empty segments"},
		{name: "fail/dot segment (ID-09)", td: "example.org", path: "/a/./b", wantErr: "dot segments"},
		{name: "fail/dot dot segment (ID-09, T5)", td: "example.org", path: "/a/../b", wantErr: "dot segments"},
		{name: "fail/trailing slash (ID-10)", td: "example.org", path: "/a/", wantErr: "trailing slash"},
		{name: "fail/colon in path (ID-11)", td: "example.org", path: "/a:b", wantErr: "path segment characters"},
		{name: "fail/at in path (ID-11)", td: "example.org", path: "/a@b", wantErr: "path segment characters"},
		{name: "fail/no leading slash", td: "example.org", path: "a", wantErr: "leading slash"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := api.IDFromProto(&types.SPIFFEID{TrustDomain: tt.td, Path: tt.path})
			checkErr(t, err, tt.wantErr)
		})
	}
	if _, err := api.IDFromProto(nil); err == nil || err.Error() != "request must specify SPIFFE ID" {
		t.Fatalf("nil: %v", err)
	}
}

// ID-05 and ID-11: every byte value is checked, in the trust domain and in a path segment.
func TestIDFromProto_ID05_ID11_AllBytes(t *testing.T) {
	for b := range 256 {
		c := byte(b)
		tdOK := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
		_, err := api.IDFromProto(&types.SPIFFEID{TrustDomain: "a" + string([]byte{c}) + "b", Path: "/w"})
		if (err == nil) != tdOK {
			t.Errorf("trust domain byte %#x: err = %v, want ok=%v", c, err, tdOK)
		}
		pathOK := tdOK || c >= 'A' && c <= 'Z'
		_, err = api.IDFromProto(&types.SPIFFEID{TrustDomain: "example.org", Path: "/a" + string([]byte{c}) + "b"})
		if (err == nil) != pathOK && c != '/' {
			t.Errorf("path byte %#x: err = %v, want ok=%v", c, err, pathOK)
		}
	}
}

func TestVerifyIDs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		verify  func(spiffeid.TrustDomain, spiffeid.ID) error
		id      string
		wantErr string
	}{
		{name: "ok/member", verify: api.VerifyMemberID, id: "spiffe://example.org/spire/server"},
		{name: "fail/member of another TD", verify: api.VerifyMemberID, id: "spiffe://other.example/x", wantErr: `"spiffe://other.example/x" is not a member of trust domain "example.org"`},
		{name: "fail/member root", verify: api.VerifyMemberID, id: "spiffe://example.org", wantErr: "path is empty"},
		{name: "ok/workload", verify: api.VerifyWorkloadID, id: "spiffe://example.org/w"},
		{name: "fail/workload in reserved namespace", verify: api.VerifyWorkloadID, id: "spiffe://example.org/spire/agent/x", wantErr: "reserved namespace"},
		{name: "fail/workload /spire", verify: api.VerifyWorkloadID, id: "spiffe://example.org/spire", wantErr: "reserved namespace"},
		{name: "ok/workload spirex is not reserved", verify: api.VerifyWorkloadID, id: "spiffe://example.org/spirex"},
		{name: "ok/agent", verify: api.VerifyAgentID, id: "spiffe://example.org/spire/agent/join_token/x"},
		{name: "fail/agent outside namespace", verify: api.VerifyAgentID, id: "spiffe://example.org/node", wantErr: "not in the agent namespace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt.verify(td, spiffeid.RequireFromString(tt.id)), tt.wantErr)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
