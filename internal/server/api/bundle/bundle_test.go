package bundle_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/api/bundle"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	ctx = context.Background()

	_ bundle.Store = (*datastore.Store)(nil)
)

type fixture struct {
	store  *datastore.Store
	client bundlev1.BundleClient
	srv    *apitest.Server
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: datastoretest.OpenSQLite(t)}
	svc, err := bundle.New(bundle.Config{TrustDomain: td, Store: f.store})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = apitest.Serve(t, svc)
	f.client = bundlev1.NewBundleClient(f.srv.Conn)
	return f
}

func newCA(t *testing.T, cn string) (der, pub []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err = x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, pub
}

func fedBundle(t *testing.T, name string) *types.Bundle {
	der, pub := newCA(t, name)
	return &types.Bundle{
		TrustDomain:     name,
		X509Authorities: []*types.X509Certificate{{Asn1: der}},
		JwtAuthorities:  []*types.JWTKey{{PublicKey: pub, KeyId: "kid-" + name, ExpiresAt: 2000000000}},
		RefreshHint:     300,
	}
}

func (f *fixture) bundles(t *testing.T) map[string]*datastore.Bundle {
	t.Helper()
	bs, _, err := f.store.ListBundles(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*datastore.Bundle{}
	for _, b := range bs {
		out[b.TrustDomain] = b
	}
	return out
}

func sameBundles(t *testing.T, before, after map[string]*datastore.Bundle) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("bundles changed: %d before, %d after", len(before), len(after))
	}
	for k, b := range before {
		a := after[k]
		if a == nil || a.SequenceNumber != b.SequenceNumber || len(a.X509Authorities) != len(b.X509Authorities) || a.RefreshHint != b.RefreshHint {
			t.Fatalf("bundle %s changed: %+v -> %+v", k, b, a)
		}
	}
}

func checkErr(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.HasPrefix(status.Convert(err).Message(), msg) {
		t.Fatalf("err = %v, want %v %q", err, code, msg)
	}
}

func checkStatus(t *testing.T, st *types.Status, code codes.Code, msg string) {
	t.Helper()
	if codes.Code(st.Code) != code || !strings.HasPrefix(st.Message, msg) {
		t.Fatalf("status = %v %q, want %v %q", codes.Code(st.Code), st.Message, code, msg)
	}
}

func TestGetBundle(t *testing.T) {
	f := setup(t)
	_, err := f.client.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	checkErr(t, err, codes.NotFound, "bundle not found")

	own := fedBundle(t, "example.org")
	if _, err := f.client.AppendBundle(ctx, &bundlev1.AppendBundleRequest{X509Authorities: own.X509Authorities, JwtAuthorities: own.JwtAuthorities}); err != nil {
		t.Fatal(err)
	}
	b, err := f.client.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if b.TrustDomain != "example.org" || len(b.X509Authorities) != 1 || len(b.JwtAuthorities) != 1 {
		t.Fatalf("bundle %v", b)
	}
	b, err = f.client.GetBundle(ctx, &bundlev1.GetBundleRequest{OutputMask: &types.BundleMask{X509Authorities: true}})
	if err != nil || b.JwtAuthorities != nil || len(b.X509Authorities) != 1 {
		t.Fatalf("masked bundle %v %v", b, err)
	}
}

func TestAppendBundle(t *testing.T) {
	f := setup(t)
	der, pub := newCA(t, "own")
	for _, tt := range []struct {
		name string
		req  *bundlev1.AppendBundleRequest
		code codes.Code
		msg  string
	}{
		{name: "fail/nothing to append", req: &bundlev1.AppendBundleRequest{}, code: codes.InvalidArgument, msg: "no authorities to append"},
		{name: "fail/bad certificate", req: &bundlev1.AppendBundleRequest{X509Authorities: []*types.X509Certificate{{Asn1: []byte("junk")}}},
			code: codes.InvalidArgument, msg: "failed to convert X.509 authority: "},
		{name: "fail/JWT key without ID", req: &bundlev1.AppendBundleRequest{JwtAuthorities: []*types.JWTKey{{PublicKey: pub}}},
			code: codes.InvalidArgument, msg: "failed to convert JWT authority: missing key ID"},
		{name: "ok/append", req: &bundlev1.AppendBundleRequest{X509Authorities: []*types.X509Certificate{{Asn1: der}}}},
		{name: "ok/append again is not duplicated", req: &bundlev1.AppendBundleRequest{X509Authorities: []*types.X509Certificate{{Asn1: der}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := f.bundles(t)
			b, err := f.client.AppendBundle(ctx, tt.req)
			if tt.code != codes.OK {
				checkErr(t, err, tt.code, tt.msg)
				sameBundles(t, before, f.bundles(t))
				return
			}
			if err != nil || len(b.X509Authorities) != 1 {
				t.Fatalf("append: %v %v", b, err)
			}
		})
	}
}

func TestFederatedBundles(t *testing.T) {
	f := setup(t)
	own := fedBundle(t, "example.org")
	if _, err := f.client.AppendBundle(ctx, &bundlev1.AppendBundleRequest{X509Authorities: own.X509Authorities}); err != nil {
		t.Fatal(err)
	}
	partner := fedBundle(t, "partner.example")

	t.Run("create", func(t *testing.T) {
		bad := fedBundle(t, "partner3.example")
		bad.X509Authorities[0].Asn1 = []byte("junk")
		before := f.bundles(t)
		resp, err := f.client.BatchCreateFederatedBundle(ctx, &bundlev1.BatchCreateFederatedBundleRequest{Bundle: []*types.Bundle{
			partner, partner, fedBundle(t, "example.org"), {TrustDomain: "Bad Name"}, bad,
		}})
		if err != nil {
			t.Fatal(err)
		}
		checkStatus(t, resp.Results[0].Status, codes.OK, "OK")
		checkStatus(t, resp.Results[1].Status, codes.AlreadyExists, "bundle already exists")
		checkStatus(t, resp.Results[2].Status, codes.InvalidArgument, "creating a federated bundle for the server's own trust domain is not allowed")
		checkStatus(t, resp.Results[3].Status, codes.InvalidArgument, "trust domain argument is not valid: ")
		checkStatus(t, resp.Results[4].Status, codes.InvalidArgument, "failed to convert bundle: unable to parse X.509 authority: ")
		if got := resp.Results[0].Bundle; got.TrustDomain != "partner.example" || got.RefreshHint != 300 || len(got.JwtAuthorities) != 1 {
			t.Fatalf("created %v", got)
		}
		after := f.bundles(t)
		if len(after) != len(before)+1 {
			t.Fatalf("%d bundles, want %d", len(after), len(before)+1)
		}
	})

	t.Run("get", func(t *testing.T) {
		b, err := f.client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "partner.example"})
		if err != nil || b.TrustDomain != "partner.example" {
			t.Fatalf("%v %v", b, err)
		}
		_, err = f.client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "example.org"})
		checkErr(t, err, codes.InvalidArgument, "getting a federated bundle for the server's own trust domain is not allowed")
		_, err = f.client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "nosuch.example"})
		checkErr(t, err, codes.NotFound, "bundle not found")
		_, err = f.client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "spiffe://"})
		checkErr(t, err, codes.InvalidArgument, "trust domain argument is not valid: ")
	})

	t.Run("list and count", func(t *testing.T) {
		resp, err := f.client.ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{})
		if err != nil || len(resp.Bundles) != 1 || resp.Bundles[0].TrustDomain != "partner.example" {
			t.Fatalf("list %v %v", resp, err)
		}
		n, err := f.client.CountBundles(ctx, &bundlev1.CountBundlesRequest{})
		if err != nil || n.Count != 2 {
			t.Fatalf("count %v %v", n, err)
		}
	})

	t.Run("update", func(t *testing.T) {
		upd := fedBundle(t, "partner.example")
		upd.RefreshHint = 60
		before := f.bundles(t)["spiffe://partner.example"]
		resp, err := f.client.BatchUpdateFederatedBundle(ctx, &bundlev1.BatchUpdateFederatedBundleRequest{
			Bundle:    []*types.Bundle{upd, fedBundle(t, "nosuch.example"), fedBundle(t, "example.org")},
			InputMask: &types.BundleMask{RefreshHint: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		checkStatus(t, resp.Results[0].Status, codes.OK, "OK")
		checkStatus(t, resp.Results[1].Status, codes.NotFound, "bundle not found")
		checkStatus(t, resp.Results[2].Status, codes.InvalidArgument, "updating a federated bundle for the server's own trust domain is not allowed")
		got := f.bundles(t)["spiffe://partner.example"]
		if got.RefreshHint != 60 || string(got.X509Authorities[0].Certificate) != string(before.X509Authorities[0].Certificate) {
			t.Fatalf("input mask not honoured: %+v", got)
		}
		if _, ok := f.bundles(t)["spiffe://nosuch.example"]; ok {
			t.Fatal("update created a bundle")
		}
	})

	t.Run("set", func(t *testing.T) {
		resp, err := f.client.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{
			fedBundle(t, "partner2.example"), fedBundle(t, "example.org"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		checkStatus(t, resp.Results[0].Status, codes.OK, "OK")
		checkStatus(t, resp.Results[1].Status, codes.InvalidArgument, "setting a federated bundle for the server's own trust domain is not allowed")
		// As SPIRE: a set bundle keeps the sequence number it was given.
		if resp.Results[0].Bundle.SequenceNumber != 0 || resp.Results[0].Bundle.TrustDomain != "partner2.example" {
			t.Fatalf("set bundle: %v", resp.Results[0].Bundle)
		}
	})
}

func TestBatchDeleteFederatedBundle_Modes(t *testing.T) {
	for _, tt := range []struct {
		name        string
		mode        bundlev1.BatchDeleteFederatedBundleRequest_Mode
		td          string
		code        codes.Code
		msg         string
		entriesLeft int
		fedLeft     int
	}{
		{name: "fail/restrict while an entry federates", mode: bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT, td: "partner.example",
			code: codes.FailedPrecondition, msg: "failed to delete federated bundle: datastore-sql: cannot delete bundle; federated with 1 registration entries", entriesLeft: 1, fedLeft: 1},
		{name: "ok/delete mode deletes the entries", mode: bundlev1.BatchDeleteFederatedBundleRequest_DELETE, td: "partner.example", entriesLeft: 0},
		{name: "ok/dissociate mode keeps the entries", mode: bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE, td: "spiffe://partner.example", entriesLeft: 1, fedLeft: 0},
		{name: "fail/unknown bundle", td: "nosuch.example", code: codes.NotFound, msg: "bundle not found", entriesLeft: 1, fedLeft: 1},
		{name: "fail/own trust domain", td: "example.org", code: codes.InvalidArgument, msg: "removing the bundle for the server trust domain is not allowed", entriesLeft: 1, fedLeft: 1},
		{name: "fail/bad trust domain", td: "BAD", code: codes.InvalidArgument, msg: "trust domain argument is not valid: ", entriesLeft: 1, fedLeft: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			if _, err := f.client.BatchCreateFederatedBundle(ctx, &bundlev1.BatchCreateFederatedBundleRequest{Bundle: []*types.Bundle{fedBundle(t, "partner.example")}}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.store.CreateEntry(ctx, &datastore.Entry{SPIFFEID: "spiffe://example.org/w", ParentID: "spiffe://example.org/p",
				Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1"}}, FederatesWith: []string{"spiffe://partner.example"}}); err != nil {
				t.Fatal(err)
			}
			resp, err := f.client.BatchDeleteFederatedBundle(ctx, &bundlev1.BatchDeleteFederatedBundleRequest{TrustDomains: []string{tt.td}, Mode: tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Results[0].TrustDomain != tt.td {
				t.Fatalf("result trust domain %q", resp.Results[0].TrustDomain)
			}
			checkStatus(t, resp.Results[0].Status, tt.code, tt.msg)
			es, _, err := f.store.ListEntries(ctx, &datastore.ListEntriesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != tt.entriesLeft {
				t.Fatalf("%d entries left, want %d", len(es), tt.entriesLeft)
			}
			if len(es) == 1 && len(es[0].FederatesWith) != tt.fedLeft {
				t.Fatalf("entry federates with %v", es[0].FederatesWith)
			}
			_, ok := f.bundles(t)["spiffe://partner.example"]
			if ok != (tt.code != codes.OK) {
				t.Fatalf("bundle present = %v after %v", ok, tt.code)
			}
		})
	}
	f := setup(t)
	_, err := f.client.BatchDeleteFederatedBundle(ctx, &bundlev1.BatchDeleteFederatedBundleRequest{TrustDomains: []string{"a.b"}, Mode: 7})
	checkErr(t, err, codes.InvalidArgument, "failed to parse deletion mode: ")
}
