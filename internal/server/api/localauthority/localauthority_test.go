package localauthority_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/api/localauthority"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	ctx = context.Background()

	_ localauthority.CA    = (*ca.CA)(nil)
	_ localauthority.Store = (*datastore.Store)(nil)
)

type fixture struct {
	store  *datastore.Store
	client localauthorityv1.LocalAuthorityClient
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: datastoretest.OpenSQLite(t)}
	c := apitest.NewCA(t, td, f.store, nil)
	svc, err := localauthority.New(localauthority.Config{TrustDomain: td, CA: c, Store: f.store})
	if err != nil {
		t.Fatal(err)
	}
	f.client = localauthorityv1.NewLocalAuthorityClient(apitest.Serve(t, svc).Conn)
	return f
}

func checkErr(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || status.Convert(err).Message() != msg {
		t.Fatalf("err = %v, want %v %q", err, code, msg)
	}
}

func (f *fixture) bundle(t *testing.T) *datastore.Bundle {
	t.Helper()
	b, err := f.store.FetchBundle(ctx, td.IDString())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The X.509 rotation of the runbook (prepare, activate, taint, revoke) with
// every refusal SPIRE gives on the way, in SPIRE's words.
func TestX509Rotation(t *testing.T) {
	f := setup(t)
	c := f.client
	st, err := c.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	if err != nil || st.Active == nil || st.Prepared != nil || st.Old != nil || st.Active.ExpiresAt == 0 {
		t.Fatalf("state %v %v", st, err)
	}
	first := st.Active.AuthorityId

	_, err = c.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.InvalidArgument, "unexpected authority ID")
	_, err = c.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{})
	checkErr(t, err, codes.InvalidArgument, "no authority ID provided")
	_, err = c.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.InvalidArgument, "unable to taint current local authority")
	_, err = c.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.InvalidArgument, "invalid authority ID: unable to use current authority")

	prep, err := c.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	second := prep.PreparedAuthority.AuthorityId
	if second == "" || second == first || len(f.bundle(t).X509Authorities) != 2 {
		t.Fatalf("prepared %v", prep)
	}
	_, err = c.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: second})
	checkErr(t, err, codes.InvalidArgument, "only Old local authorities can be tainted")

	act, err := c.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: second})
	if err != nil || act.ActivatedAuthority.AuthorityId != second {
		t.Fatalf("activate %v %v", act, err)
	}
	st, _ = c.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	if st.Active.AuthorityId != second || st.Old.GetAuthorityId() != first {
		t.Fatalf("state after activation %v", st)
	}

	_, err = c.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.Internal, "failed to revoke X.509 authority: it is not possible to revoke an untainted root CA")
	if len(f.bundle(t).X509Authorities) != 2 {
		t.Fatal("a refused revoke changed the bundle")
	}
	tr, err := c.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: first})
	if err != nil || tr.TaintedAuthority.AuthorityId != first {
		t.Fatalf("taint %v %v", tr, err)
	}
	_, err = c.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.Internal, "failed to taint X.509 authority: root CA is already tainted")
	_, err = c.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: "0000000000000000000000000000000000000000"})
	checkErr(t, err, codes.InvalidArgument, "unexpected authority ID")

	rv, err := c.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: first})
	if err != nil || rv.RevokedAuthority.AuthorityId != first || rv.RevokedAuthority.ExpiresAt != 0 {
		t.Fatalf("revoke %v %v", rv, err)
	}
	if b := f.bundle(t); len(b.X509Authorities) != 1 {
		t.Fatalf("bundle still has %d X.509 authorities", len(b.X509Authorities))
	}
}

func TestJWTRotation(t *testing.T) {
	f := setup(t)
	c := f.client
	st, err := c.GetJWTAuthorityState(ctx, &localauthorityv1.GetJWTAuthorityStateRequest{})
	if err != nil || st.Active == nil {
		t.Fatalf("state %v %v", st, err)
	}
	first := st.Active.AuthorityId
	_, err = c.ActivateJWTAuthority(ctx, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.InvalidArgument, "unexpected authority ID")
	_, err = c.TaintJWTAuthority(ctx, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.InvalidArgument, "unable to taint current local authority")
	_, err = c.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.InvalidArgument, "invalid authority ID: unable to use current authority")

	prep, err := c.PrepareJWTAuthority(ctx, &localauthorityv1.PrepareJWTAuthorityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	second := prep.PreparedAuthority.AuthorityId
	_, err = c.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: second})
	checkErr(t, err, codes.InvalidArgument, "invalid authority ID: unable to use a prepared key")
	if _, err := c.ActivateJWTAuthority(ctx, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: second}); err != nil {
		t.Fatal(err)
	}
	_, err = c.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.Internal, "failed to revoke JWT authority: it is not possible to revoke an untainted key")
	tr, err := c.TaintJWTAuthority(ctx, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: first})
	if err != nil || tr.TaintedAuthority.AuthorityId != first || tr.TaintedAuthority.ExpiresAt != 0 {
		t.Fatalf("taint %v %v", tr, err)
	}
	_, err = c.TaintJWTAuthority(ctx, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: first})
	checkErr(t, err, codes.Internal, "failed to taint JWT authority: key is already tainted")
	if _, err := c.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: first}); err != nil {
		t.Fatal(err)
	}
	for _, k := range f.bundle(t).JWTAuthorities {
		if k.KeyID == first {
			t.Fatal("revoked key still in the bundle")
		}
	}
}

func TestUpstreamWithoutUpstream(t *testing.T) {
	f := setup(t)
	before := f.bundle(t)
	_, err := f.client.TaintX509UpstreamAuthority(ctx, &localauthorityv1.TaintX509UpstreamAuthorityRequest{SubjectKeyId: "99a41d40818ad53c0d3261e8cea30a6aea61e744"})
	checkErr(t, err, codes.FailedPrecondition, "upstream authority is not configured")
	_, err = f.client.RevokeX509UpstreamAuthority(ctx, &localauthorityv1.RevokeX509UpstreamAuthorityRequest{SubjectKeyId: "99a41d40818ad53c0d3261e8cea30a6aea61e744"})
	checkErr(t, err, codes.FailedPrecondition, "upstream authority is not configured")
	if after := f.bundle(t); after.SequenceNumber != before.SequenceNumber {
		t.Fatal("bundle changed")
	}
}

func writeUpstream(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream"}, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestUpstreamRefusals(t *testing.T) {
	store := datastoretest.OpenSQLite(t)
	certFile, keyFile := writeUpstream(t)
	up, err := ca.NewUpstreamDisk(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ca.Config{TrustDomain: td, KeyManager: ca.NewMemoryKeyManager(), Store: store, Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := localauthority.New(localauthority.Config{TrustDomain: td, CA: c, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	client := localauthorityv1.NewLocalAuthorityClient(apitest.Serve(t, svc).Conn)
	current := c.X509Authorities().Active.UpstreamAuthorityID
	if current == "" {
		t.Fatal("no upstream authority ID")
	}
	_, err = client.TaintX509UpstreamAuthority(ctx, &localauthorityv1.TaintX509UpstreamAuthorityRequest{})
	checkErr(t, err, codes.InvalidArgument, "provided subject key id is not valid: no subject key ID provided")
	_, err = client.TaintX509UpstreamAuthority(ctx, &localauthorityv1.TaintX509UpstreamAuthorityRequest{SubjectKeyId: strings.ToUpper(current)})
	checkErr(t, err, codes.InvalidArgument, "provided subject key id is not valid: unable to use upstream authority singing current authority")
	_, err = client.RevokeX509UpstreamAuthority(ctx, &localauthorityv1.RevokeX509UpstreamAuthorityRequest{SubjectKeyId: "00ff"})
	checkErr(t, err, codes.InvalidArgument, "invalid subject key ID: upstream authority didn't sign the old local authority")
	_, err = client.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: "x"})
	checkErr(t, err, codes.FailedPrecondition, "local authority can't be tainted if there is an upstream authority")
	b, err := store.FetchBundle(ctx, td.IDString())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range b.X509Authorities {
		if a.Tainted {
			t.Fatal("a refusal tainted a root")
		}
	}
}
