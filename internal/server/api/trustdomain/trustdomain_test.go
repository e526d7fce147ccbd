package trustdomain_test

import (
	"context"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/api/trustdomain"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	ctx = context.Background()

	_ trustdomain.Store = (*datastore.Store)(nil)
)

type fixture struct {
	store  *datastore.Store
	client trustdomainv1.TrustDomainClient
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: datastoretest.OpenSQLite(t)}
	svc, err := trustdomain.New(trustdomain.Config{TrustDomain: td, Store: f.store})
	if err != nil {
		t.Fatal(err)
	}
	f.client = trustdomainv1.NewTrustDomainClient(apitest.Serve(t, svc).Conn)
	return f
}

func web(name, url string) *types.FederationRelationship {
	return &types.FederationRelationship{TrustDomain: name, BundleEndpointUrl: url,
		BundleEndpointProfile: &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}}
}

func spiffe(name, url, id string) *types.FederationRelationship {
	return &types.FederationRelationship{TrustDomain: name, BundleEndpointUrl: url,
		BundleEndpointProfile: &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: id}}}
}

func checkStatus(t *testing.T, st *types.Status, code codes.Code, msg string) {
	t.Helper()
	if codes.Code(st.Code) != code || !strings.HasPrefix(st.Message, msg) {
		t.Fatalf("status = %v %q, want %v %q", codes.Code(st.Code), st.Message, code, msg)
	}
}

func checkErr(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.HasPrefix(status.Convert(err).Message(), msg) {
		t.Fatalf("err = %v, want %v %q", err, code, msg)
	}
}

func (f *fixture) count(t *testing.T) int {
	t.Helper()
	frs, _, err := f.store.ListFederationRelationships(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(frs)
}

func TestFederationRelationships(t *testing.T) {
	f := setup(t)

	t.Run("create", func(t *testing.T) {
		resp, err := f.client.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{
			FederationRelationships: []*types.FederationRelationship{
				web("partner3.example", "https://127.0.0.1:8443/bundle"),
				spiffe("partner.example", "https://127.0.0.1:8443/bundle", "spiffe://partner.example/spire/server"),
				web("partner3.example", "https://127.0.0.1:8443/bundle"),
				web("partner5.example", "http://127.0.0.1:8443/bundle"),
				web("example.org", "https://127.0.0.1:8443/bundle"),
				spiffe("partner6.example", "https://h/b", "not-an-id"),
				{TrustDomain: "partner7.example", BundleEndpointUrl: "https://h/b"},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		checkStatus(t, resp.Results[0].Status, codes.OK, "OK")
		checkStatus(t, resp.Results[1].Status, codes.OK, "OK")
		checkStatus(t, resp.Results[2].Status, codes.Internal, "failed to create federation relationship: ")
		checkStatus(t, resp.Results[3].Status, codes.InvalidArgument, "failed to convert federation relationship: bundle endpoint URL must use the https scheme")
		checkStatus(t, resp.Results[4].Status, codes.InvalidArgument, "unable to create federation relationship for server trust domain")
		checkStatus(t, resp.Results[5].Status, codes.InvalidArgument, "failed to convert federation relationship: failed to parse endpoint SPIFFE ID: ")
		checkStatus(t, resp.Results[6].Status, codes.InvalidArgument, "failed to convert federation relationship: unsupported bundle endpoint profile type")
		for _, r := range resp.Results[2:] {
			if strings.Contains(strings.ToLower(r.Status.Message), "sql") {
				t.Fatalf("store text leaked: %q", r.Status.Message)
			}
		}
		if got := resp.Results[1].FederationRelationship; got.GetHttpsSpiffe().GetEndpointSpiffeId() != "spiffe://partner.example/spire/server" {
			t.Fatalf("created %v", got)
		}
		if n := f.count(t); n != 2 {
			t.Fatalf("%d relationships stored, want 2", n)
		}
	})

	t.Run("get and list", func(t *testing.T) {
		fr, err := f.client.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "partner3.example"})
		if err != nil || fr.GetHttpsWeb() == nil || fr.BundleEndpointUrl != "https://127.0.0.1:8443/bundle" {
			t.Fatalf("%v %v", fr, err)
		}
		_, err = f.client.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "nosuch.example"})
		checkErr(t, err, codes.NotFound, "federation relationship does not exist")
		_, err = f.client.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "NO"})
		checkErr(t, err, codes.InvalidArgument, "failed to parse trust domain: ")
		resp, err := f.client.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{PageSize: 1})
		if err != nil || len(resp.FederationRelationships) != 1 || resp.NextPageToken == "" {
			t.Fatalf("%v %v", resp, err)
		}
	})

	t.Run("update", func(t *testing.T) {
		resp, err := f.client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
			FederationRelationships: []*types.FederationRelationship{
				web("partner3.example", "https://127.0.0.1:8443/bundle2"),
				web("nosuch.example", "https://127.0.0.1:8443/bundle2"),
				web("partner.example", "https://other/bundle"),
			},
			InputMask: &types.FederationRelationshipMask{BundleEndpointUrl: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		checkStatus(t, resp.Results[0].Status, codes.OK, "OK")
		checkStatus(t, resp.Results[1].Status, codes.Internal, "failed to update federation relationship: unable to fetch federation relationship: record not found")
		checkStatus(t, resp.Results[2].Status, codes.OK, "OK")
		if resp.Results[0].FederationRelationship.BundleEndpointUrl != "https://127.0.0.1:8443/bundle2" {
			t.Fatalf("updated %v", resp.Results[0].FederationRelationship)
		}
		// The mask kept the https_spiffe profile of partner.example.
		if got := resp.Results[2].FederationRelationship; got.GetHttpsSpiffe() == nil || got.BundleEndpointUrl != "https://other/bundle" {
			t.Fatalf("updated %v", got)
		}
		if n := f.count(t); n != 2 {
			t.Fatalf("update created relationships: %d", n)
		}
	})

	t.Run("refresh", func(t *testing.T) {
		_, err := f.client.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "partner3.example"})
		checkErr(t, err, codes.Internal, "failed to refresh bundle")
		_, err = f.client.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "nosuch.example"})
		checkErr(t, err, codes.NotFound, `no relationship with trust domain "nosuch.example"`)
	})

	t.Run("delete", func(t *testing.T) {
		resp, err := f.client.BatchDeleteFederationRelationship(ctx, &trustdomainv1.BatchDeleteFederationRelationshipRequest{
			TrustDomains: []string{"nosuch.example", "", "partner3.example"},
		})
		if err != nil {
			t.Fatal(err)
		}
		checkStatus(t, resp.Results[0].Status, codes.NotFound, "federation relationship not found")
		if resp.Results[0].TrustDomain != "nosuch.example" {
			t.Fatalf("result %v", resp.Results[0])
		}
		checkStatus(t, resp.Results[1].Status, codes.InvalidArgument, "missing trust domain")
		checkStatus(t, resp.Results[2].Status, codes.OK, "OK")
		if n := f.count(t); n != 1 {
			t.Fatalf("%d relationships left", n)
		}
	})
}
