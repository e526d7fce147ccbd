package api

import (
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Bundle endpoint profiles as stored.
const (
	ProfileHTTPSWeb    = "https_web"
	ProfileHTTPSSPIFFE = "https_spiffe"
)

// AllFederationFields is the federation relationship mask with every field set.
func AllFederationFields() *types.FederationRelationshipMask {
	return &types.FederationRelationshipMask{BundleEndpointUrl: true, BundleEndpointProfile: true, TrustDomainBundle: true}
}

// FederationFromProto validates a federation relationship and converts the
// fields in mask (nil: all), with SPIRE's rules: an https URL with a host
// and no user info (CONFORMANCE FD-03), a known profile, an endpoint SPIFFE
// ID for https_spiffe, and a bundle of the same trust domain.
func FederationFromProto(f *types.FederationRelationship, mask *types.FederationRelationshipMask) (*datastore.FederationRelationship, error) {
	if f == nil {
		return nil, Publicf("missing federation relationship")
	}
	if mask == nil {
		mask = AllFederationFields()
	}
	td, err := TrustDomainFromString(f.TrustDomain)
	if err != nil {
		return nil, wrapPublic("failed to parse trust domain", err)
	}
	out := &datastore.FederationRelationship{TrustDomain: td.Name()}
	if mask.BundleEndpointUrl {
		u, err := url.Parse(f.BundleEndpointUrl)
		switch {
		case err != nil:
			return nil, Publicf("failed to parse bundle endpoint URL: %v", err)
		case u.Scheme != "https":
			return nil, Publicf("bundle endpoint URL must use the https scheme")
		case u.Host == "":
			return nil, Publicf("bundle endpoint URL must specify the host")
		case u.User != nil:
			return nil, Publicf("bundle endpoint URL must not contain user info")
		}
		out.BundleEndpointURL = u.String()
	}
	if mask.BundleEndpointProfile {
		switch p := f.BundleEndpointProfile.(type) {
		case *types.FederationRelationship_HttpsSpiffe:
			if p.HttpsSpiffe == nil {
				return nil, Publicf("bundle endpoint profile does not contain \"HttpsSpiffe\"")
			}
			id, err := spiffeid.FromString(p.HttpsSpiffe.EndpointSpiffeId)
			if err != nil {
				return nil, Publicf("failed to parse endpoint SPIFFE ID: %v", err)
			}
			out.BundleEndpointProfile = ProfileHTTPSSPIFFE
			out.EndpointSPIFFEID = id.String()
		case *types.FederationRelationship_HttpsWeb:
			out.BundleEndpointProfile = ProfileHTTPSWeb
		default:
			return nil, Publicf("unsupported bundle endpoint profile type: %T", f.BundleEndpointProfile)
		}
	}
	if mask.TrustDomainBundle && f.TrustDomainBundle != nil {
		b, err := BundleFromProto(f.TrustDomainBundle)
		if err != nil {
			return nil, wrapPublic("failed to parse bundle", err)
		}
		if b.TrustDomain != td.IDString() {
			return nil, Publicf("trust domain bundle (%q) must match the trust domain of the federation relationship (%q)", f.TrustDomainBundle.TrustDomain, td)
		}
		out.TrustDomainBundle = b
	}
	return out, nil
}

// ProtoFromFederation converts a stored relationship, keeping the fields in
// mask (nil: all).
func ProtoFromFederation(f *datastore.FederationRelationship, mask *types.FederationRelationshipMask) (*types.FederationRelationship, error) {
	if mask == nil {
		mask = AllFederationFields()
	}
	if f == nil || f.TrustDomain == "" {
		return nil, Publicf("trust domain is required")
	}
	td, err := spiffeid.TrustDomainFromString(f.TrustDomain)
	if err != nil {
		return nil, wrapPublic("invalid trust domain", err)
	}
	out := &types.FederationRelationship{TrustDomain: td.Name()}
	if mask.BundleEndpointUrl {
		if f.BundleEndpointURL == "" {
			return nil, Publicf("bundle endpoint URL is required")
		}
		out.BundleEndpointUrl = f.BundleEndpointURL
	}
	if mask.BundleEndpointProfile {
		switch f.BundleEndpointProfile {
		case ProfileHTTPSSPIFFE:
			out.BundleEndpointProfile = &types.FederationRelationship_HttpsSpiffe{
				HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: f.EndpointSPIFFEID},
			}
		case ProfileHTTPSWeb:
			out.BundleEndpointProfile = &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
		default:
			return nil, Publicf("unsupported BundleEndpointProfile: %q", f.BundleEndpointProfile)
		}
	}
	if mask.TrustDomainBundle && f.TrustDomainBundle != nil {
		b, err := ProtoFromBundle(f.TrustDomainBundle)
		if err != nil {
			return nil, err
		}
		out.TrustDomainBundle = b
	}
	return out, nil
}
