package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"

	"github.com/neural-hive/hive-identity/internal/server/api"
)

func testCA(t *testing.T) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, pkix
}

func TestBundleConversion(t *testing.T) {
	der, pub := testCA(t)
	in := &types.Bundle{
		TrustDomain:     "partner.example",
		X509Authorities: []*types.X509Certificate{{Asn1: der}},
		JwtAuthorities:  []*types.JWTKey{{PublicKey: pub, KeyId: "kid", ExpiresAt: 99}},
		RefreshHint:     60,
		SequenceNumber:  3,
	}
	b, err := api.BundleFromProto(in)
	if err != nil {
		t.Fatal(err)
	}
	if b.TrustDomain != "spiffe://partner.example" {
		t.Fatalf("trust domain %q", b.TrustDomain)
	}
	out, err := api.ProtoFromBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip:\n in %v\nout %v", in, out)
	}

	for _, tt := range []struct {
		name    string
		b       *types.Bundle
		wantErr string
	}{
		{name: "fail/bad trust domain", b: &types.Bundle{TrustDomain: "Bad"}, wantErr: "invalid trust domain"},
		{name: "fail/bad certificate", b: &types.Bundle{TrustDomain: "a.b", X509Authorities: []*types.X509Certificate{{Asn1: []byte{1, 2}}}}, wantErr: "unable to parse X.509 authority"},
		{name: "fail/bad JWT key", b: &types.Bundle{TrustDomain: "a.b", JwtAuthorities: []*types.JWTKey{{PublicKey: []byte{1}, KeyId: "k"}}}, wantErr: "unable to parse JWT authority"},
		{name: "fail/JWT key without ID", b: &types.Bundle{TrustDomain: "a.b", JwtAuthorities: []*types.JWTKey{{PublicKey: pub}}}, wantErr: "missing key ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := api.BundleFromProto(tt.b)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestFederationConversion(t *testing.T) {
	in := &types.FederationRelationship{
		TrustDomain:       "partner.example",
		BundleEndpointUrl: "https://partner.example/bundle",
		BundleEndpointProfile: &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{
			EndpointSpiffeId: "spiffe://partner.example/spire/server"}},
	}
	fr, err := api.FederationFromProto(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := api.ProtoFromFederation(fr, nil)
	if err != nil || !proto.Equal(in, out) {
		t.Fatalf("round trip: %v %v", out, err)
	}
	for _, tt := range []struct {
		name, url, wantErr string
	}{
		{name: "fail/http (FD-03)", url: "http://partner.example/b", wantErr: "bundle endpoint URL must use the https scheme"},
		{name: "fail/userinfo (FD-03)", url: "https://u:p@partner.example/b", wantErr: "bundle endpoint URL must not contain user info"},
		{name: "fail/no host", url: "https:///b", wantErr: "bundle endpoint URL must specify the host"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := proto.Clone(in).(*types.FederationRelationship)
			bad.BundleEndpointUrl = tt.url
			_, err := api.FederationFromProto(bad, nil)
			checkErr(t, err, tt.wantErr)
		})
	}
}
