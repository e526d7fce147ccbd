package datastoretest

import (
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

func testFederation(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	web := &datastore.FederationRelationship{TrustDomain: "web.org", BundleEndpointURL: "https://web.org/bundle",
		BundleEndpointProfile: datastore.BundleEndpointWeb}
	spf := &datastore.FederationRelationship{TrustDomain: "spf.org", BundleEndpointURL: "https://spf.org:8443",
		BundleEndpointProfile: datastore.BundleEndpointSPIFFE, EndpointSPIFFEID: "spiffe://spf.org/spire/server",
		TrustDomainBundle: &datastore.Bundle{X509Authorities: x509s("spf-root"), RefreshHint: 60}}

	t.Run("ok/create without bundle", func(t *testing.T) {
		got, err := s.CreateFederationRelationship(ctx, web)
		requireNoError(t, err)
		requireEqual(t, got, web, "created relationship")
		got, err = s.FetchFederationRelationship(ctx, "web.org")
		requireNoError(t, err)
		requireEqual(t, got, web, "fetched relationship")
	})
	t.Run("ok/create with bundle", func(t *testing.T) {
		got, err := s.CreateFederationRelationship(ctx, spf)
		requireNoError(t, err)
		want := *spf
		want.TrustDomainBundle = &datastore.Bundle{TrustDomain: "spiffe://spf.org", X509Authorities: x509s("spf-root"), RefreshHint: 60}
		requireEqual(t, got, &want, "created relationship")
		b, err := s.FetchBundle(ctx, "spiffe://spf.org")
		requireNoError(t, err)
		requireEqual(t, b, want.TrustDomainBundle, "stored bundle")
		got, err = s.FetchFederationRelationship(ctx, "spf.org")
		requireNoError(t, err)
		requireEqual(t, got, &want, "fetched relationship")
	})
	for _, tt := range []struct {
		name   string
		fr     *datastore.FederationRelationship
		target error
		msg    string
	}{
		{"fail/existing", web, datastore.ErrAlreadyExists, `federation relationship with "web.org" already exists`},
		{"fail/no URL", &datastore.FederationRelationship{TrustDomain: "x.org", BundleEndpointProfile: "https_web"},
			datastore.ErrInvalidArgument, "bundle endpoint URL is required"},
		{"fail/unknown profile", &datastore.FederationRelationship{TrustDomain: "x.org", BundleEndpointURL: "https://x", BundleEndpointProfile: "ftp"},
			datastore.ErrInvalidArgument, `unknown bundle endpoint profile type: "ftp"`},
		{"fail/https_spiffe without ID", &datastore.FederationRelationship{TrustDomain: "x.org", BundleEndpointURL: "https://x", BundleEndpointProfile: "https_spiffe"},
			datastore.ErrInvalidArgument, "bundle endpoint SPIFFE ID is required"},
		{"fail/no trust domain", &datastore.FederationRelationship{BundleEndpointURL: "https://x", BundleEndpointProfile: "https_web"},
			datastore.ErrInvalidArgument, "missing its trust domain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, s)
			_, err := s.CreateFederationRelationship(ctx, tt.fr)
			requireError(t, err, tt.target, tt.msg)
			requireUnchanged(t, s, before)
		})
	}
	t.Run("fail/fetch unknown", func(t *testing.T) {
		_, err := s.FetchFederationRelationship(ctx, "nosuch.org")
		requireError(t, err, datastore.ErrNotFound, `federation relationship with "nosuch.org" not found`)
	})
	t.Run("ok/list pages", func(t *testing.T) {
		p := &datastore.Pagination{PageSize: 1}
		var got []string
		for {
			page, token, err := s.ListFederationRelationships(ctx, p)
			requireNoError(t, err)
			for _, fr := range page {
				got = append(got, fr.TrustDomain)
			}
			if token == "" {
				break
			}
		}
		requireEqual(t, got, []string{"web.org", "spf.org"}, "relationships")
		all, _, err := s.ListFederationRelationships(ctx, nil)
		requireNoError(t, err)
		requireEqual(t, all[1].TrustDomainBundle.X509Authorities, x509s("spf-root"), "bundle in the list")
		_, _, err = s.ListFederationRelationships(ctx, &datastore.Pagination{Token: "?", PageSize: 1})
		requireError(t, err, datastore.ErrInvalidArgument, "could not parse token")
	})
	t.Run("ok/update", func(t *testing.T) {
		upd := &datastore.FederationRelationship{TrustDomain: "web.org", BundleEndpointURL: "https://web.org:8443",
			BundleEndpointProfile: datastore.BundleEndpointSPIFFE, EndpointSPIFFEID: "spiffe://web.org/server",
			TrustDomainBundle: &datastore.Bundle{X509Authorities: x509s("web-root")}}
		got, err := s.UpdateFederationRelationship(ctx, upd)
		requireNoError(t, err)
		want := *upd
		want.TrustDomainBundle = &datastore.Bundle{TrustDomain: "spiffe://web.org", X509Authorities: x509s("web-root")}
		requireEqual(t, got, &want, "updated relationship")
		got, err = s.FetchFederationRelationship(ctx, "web.org")
		requireNoError(t, err)
		requireEqual(t, got, &want, "fetched relationship")
	})
	t.Run("fail/update unknown", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.UpdateFederationRelationship(ctx, &datastore.FederationRelationship{TrustDomain: "nosuch.org",
			BundleEndpointURL: "https://x", BundleEndpointProfile: "https_web", TrustDomainBundle: &datastore.Bundle{}})
		requireError(t, err, datastore.ErrNotFound, "not found")
		requireUnchanged(t, s, before)
	})
	t.Run("ok/delete keeps the bundle", func(t *testing.T) {
		requireNoError(t, s.DeleteFederationRelationship(ctx, "spf.org"))
		_, err := s.FetchFederationRelationship(ctx, "spf.org")
		requireError(t, err, datastore.ErrNotFound, "not found")
		_, err = s.FetchBundle(ctx, "spiffe://spf.org")
		requireNoError(t, err)
	})
	t.Run("fail/delete unknown", func(t *testing.T) {
		requireError(t, s.DeleteFederationRelationship(ctx, "spf.org"), datastore.ErrNotFound, "not found")
	})
}
