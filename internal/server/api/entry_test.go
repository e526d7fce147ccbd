package api_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

func fullEntry() *types.Entry {
	return &types.Entry{
		Id:             "custom-ID_1.x",
		SpiffeId:       &types.SPIFFEID{TrustDomain: "example.org", Path: "/workload"},
		ParentId:       &types.SPIFFEID{TrustDomain: "example.org", Path: "/spire/agent/join_token/t"},
		Selectors:      []*types.Selector{{Type: "unix", Value: "uid:1000"}, {Type: "k8s", Value: "ns:a"}},
		X509SvidTtl:    3600,
		JwtSvidTtl:     300,
		FederatesWith:  []string{"partner.example"},
		Admin:          true,
		Downstream:     true,
		ExpiresAt:      1893456000,
		DnsNames:       []string{"a.example.org", "*.b.example.org"},
		RevisionNumber: 4,
		StoreSvid:      true,
		Hint:           "primary",
		CreatedAt:      1700000000,
	}
}

// Every entry field survives proto -> datastore -> proto.
func TestEntryConversion_KeepsEveryField(t *testing.T) {
	in := fullEntry()
	in.Selectors = []*types.Selector{{Type: "k8s", Value: "ns:a"}, {Type: "k8s", Value: "sa:b"}}
	e, err := api.EntryFromProto(td, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.FederatesWith[0] != "spiffe://partner.example" || e.SPIFFEID != "spiffe://example.org/workload" {
		t.Fatalf("stored forms: %+v", e)
	}
	e.CreatedAt = in.CreatedAt // set by the store
	out, err := api.ProtoFromEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip changed the entry:\n in: %v\nout: %v", in, out)
	}
	// Every field of the datastore type is set by the full entry, so a field
	// added to one side but not converted shows up here.
	v := reflect.ValueOf(*e)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("datastore.Entry.%s is not converted", v.Type().Field(i).Name)
		}
	}
}

func TestEntryFromProto_Refusals(t *testing.T) {
	for _, tt := range []struct {
		name    string
		edit    func(*types.Entry)
		wantErr string
	}{
		{name: "fail/malformed SPIFFE ID", edit: func(e *types.Entry) { e.SpiffeId.Path = "/a//b" },
			wantErr: "invalid spiffe ID: path cannot contain empty segments"},
		{name: "fail/SPIFFE ID in another trust domain", edit: func(e *types.Entry) { e.SpiffeId.TrustDomain = "other.example" },
			wantErr: `invalid spiffe ID: "spiffe://other.example/workload" is not a member of trust domain "example.org"`},
		{name: "fail/parent in another trust domain", edit: func(e *types.Entry) { e.ParentId.TrustDomain = "other.example" },
			wantErr: `invalid parent ID: "spiffe://other.example/spire/agent/join_token/t" is not a member of trust domain "example.org"`},
		{name: "fail/missing parent", edit: func(e *types.Entry) { e.ParentId = nil }, wantErr: "invalid parent ID: request must specify SPIFFE ID"},
		{name: "fail/reserved SPIFFE ID", edit: func(e *types.Entry) { e.SpiffeId.Path = "/spire/server" }, wantErr: "reserved namespace"},
		{name: "fail/no selectors", edit: func(e *types.Entry) { e.Selectors = nil }, wantErr: "selector list is empty"},
		{name: "fail/selector without value", edit: func(e *types.Entry) { e.Selectors[0].Value = "" }, wantErr: "missing selector value"},
		{name: "fail/selector without type", edit: func(e *types.Entry) { e.Selectors[0].Type = "" }, wantErr: "missing selector type"},
		{name: "fail/selector type with colon", edit: func(e *types.Entry) { e.Selectors[0] = &types.Selector{Type: "unix:uid", Value: "0"} }, wantErr: "selector type contains ':'"},
		{name: "fail/bad federated trust domain", edit: func(e *types.Entry) { e.FederatesWith = []string{"Bad.Example"} }, wantErr: "invalid federated trust domain"},
		{name: "fail/bad DNS name", edit: func(e *types.Entry) { e.DnsNames = []string{"a.*.b"} }, wantErr: "invalid DNS name: wildcard must be first label"},
		{name: "fail/hint too long", edit: func(e *types.Entry) { e.Hint = strings.Repeat("h", 1025) }, wantErr: "hint is too long, max length is 1024 characters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := fullEntry()
			tt.edit(e)
			_, err := api.EntryFromProto(td, e, nil)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestEntryFromProto_MaskSkipsFields(t *testing.T) {
	e := &types.Entry{Id: "x", X509SvidTtl: 5}
	got, err := api.EntryFromProto(td, e, &types.EntryMask{X509SvidTtl: true})
	if err != nil || got.X509SVIDTTL != 5 || got.SPIFFEID != "" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestValidateNewEntry(t *testing.T) {
	ok := func() *datastore.Entry {
		return &datastore.Entry{SPIFFEID: "spiffe://example.org/w", ParentID: "spiffe://example.org/p",
			Selectors: []datastore.Selector{{Type: "unix", Value: "uid:0"}}}
	}
	for _, tt := range []struct {
		name    string
		edit    func(*datastore.Entry)
		wantErr string
	}{
		{name: "ok/plain", edit: func(*datastore.Entry) {}},
		{name: "ok/custom ID", edit: func(e *datastore.Entry) { e.ID = "Az09._-" }},
		{name: "fail/negative X509 TTL", edit: func(e *datastore.Entry) { e.X509SVIDTTL = -1 },
			wantErr: "datastore-validation: invalid registration entry: X509SvidTtl is not set"},
		{name: "fail/negative JWT TTL", edit: func(e *datastore.Entry) { e.JWTSVIDTTL = -1 }, wantErr: "JwtSvidTtl is not set"},
		{name: "fail/entry ID charset", edit: func(e *datastore.Entry) { e.ID = "a/b" }, wantErr: "entry ID contains invalid characters"},
		{name: "fail/entry ID length", edit: func(e *datastore.Entry) { e.ID = strings.Repeat("a", 256) }, wantErr: "entry ID too long"},
		{name: "fail/store SVID with mixed selector types", edit: func(e *datastore.Entry) {
			e.StoreSVID = true
			e.Selectors = append(e.Selectors, datastore.Selector{Type: "aws", Value: "x"})
		}, wantErr: "selector types must be the same when store SVID is enabled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := ok()
			tt.edit(e)
			checkErr(t, api.ValidateNewEntry(e), tt.wantErr)
		})
	}
}

func TestApplyEntryMask(t *testing.T) {
	e := fullEntry()
	api.ApplyEntryMask(e, &types.EntryMask{Hint: true})
	want := &types.Entry{Id: "custom-ID_1.x", Hint: "primary"}
	if !proto.Equal(e, want) {
		t.Fatalf("got %v", e)
	}
	e = fullEntry()
	api.ApplyEntryMask(e, api.AllEntryFields())
	if !proto.Equal(e, fullEntry()) {
		t.Fatal("all-fields mask changed the entry")
	}
}

func TestValidateDNSName(t *testing.T) {
	for _, tt := range []struct {
		name, dns, wantErr string
	}{
		{name: "ok/plain", dns: "a.example.org"},
		{name: "ok/wildcard", dns: "*.example.org"},
		{name: "ok/underscore and space, as SPIRE accepts", dns: "bad_dns name"},
		{name: "fail/non ascii", dns: "é.example", wantErr: "name must be ascii"},
		{name: "fail/two wildcards", dns: "*.*.example", wantErr: "too many wildcards"},
		{name: "fail/inner wildcard", dns: "a.*.example", wantErr: "wildcard must be first label"},
		{name: "fail/trailing dot", dns: "a.example.", wantErr: "domain ends with dot"},
		{name: "fail/empty", dns: " ", wantErr: "empty or only whitespace"},
		{name: "fail/leading hyphen", dns: "-a.example", wantErr: "idna error"},
	} {
		t.Run(tt.name, func(t *testing.T) { checkErr(t, api.ValidateDNSName(tt.dns), tt.wantErr) })
	}
	checkErr(t, api.CheckWildcardOverlap([]string{"*.example.org", "a.example.org"}), "overlaps with an existing wildcard")
	checkErr(t, api.CheckWildcardOverlap([]string{"*.example.org", "a.b.example.org"}), "")
}
