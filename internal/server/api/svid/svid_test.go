package svid_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api/apitest"
	"github.com/neural-hive/hive-identity/internal/server/api/svid"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	ctx = context.Background()

	_ svid.CA = (*ca.CA)(nil)
)

type fixture struct {
	store  *datastore.Store
	client svidv1.SVIDClient
	roots  *x509.CertPool
	srv    *apitest.Server
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: datastoretest.OpenSQLite(t)}
	c := apitest.NewCA(t, td, f.store, nil)
	svc, err := svid.New(svid.Config{TrustDomain: td, CA: c})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = apitest.Serve(t, svc)
	f.client = svidv1.NewSVIDClient(f.srv.Conn)
	b, err := f.store.FetchBundle(ctx, td.IDString())
	if err != nil {
		t.Fatal(err)
	}
	f.roots = x509.NewCertPool()
	for _, a := range b.X509Authorities {
		cert, err := x509.ParseCertificate(a.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		f.roots.AddCert(cert)
	}
	return f
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csr(t *testing.T, key crypto.Signer, edit func(*x509.CertificateRequest), uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestMintX509SVID(t *testing.T) {
	f := setup(t)
	key := newKey(t)
	for _, tt := range []struct {
		name  string
		csr   func() []byte
		ttl   int32
		code  codes.Code
		msg   string
		check func(*testing.T, *x509.Certificate)
	}{
		{name: "ok/ID from the CSR", csr: func() []byte { return csr(t, key, nil, "spiffe://example.org/workload/x") }},
		{name: "ok/TTL honoured", ttl: 120, csr: func() []byte { return csr(t, key, nil, "spiffe://example.org/workload/x") },
			check: func(t *testing.T, c *x509.Certificate) {
				if d := time.Until(c.NotAfter); d > 121*time.Second || d < 100*time.Second {
					t.Fatalf("lifetime %v, want ~120s", d)
				}
			}},
		{name: "ok/TTL longer than the CA is capped", ttl: 1 << 30, csr: func() []byte { return csr(t, key, nil, "spiffe://example.org/workload/x") },
			check: func(t *testing.T, c *x509.Certificate) {
				if time.Until(c.NotAfter) > 25*time.Hour {
					t.Fatalf("not capped: %v", c.NotAfter)
				}
			}},
		{name: "ok/DNS names and subject", csr: func() []byte {
			return csr(t, key, func(r *x509.CertificateRequest) {
				r.DNSNames = []string{"a.example.org", "*.b.example.org"}
				r.Subject = pkix.Name{Organization: []string{"Hive"}}
			}, "spiffe://example.org/workload/x")
		}, check: func(t *testing.T, c *x509.Certificate) {
			if strings.Join(c.DNSNames, ",") != "a.example.org,*.b.example.org" || c.Subject.CommonName != "a.example.org" || c.Subject.Organization[0] != "Hive" {
				t.Fatalf("names %v %v", c.DNSNames, c.Subject)
			}
		}},
		// T1: only the validated URI SAN, DNS names and subject reach the certificate.
		{name: "ok/T1 other CSR content is ignored", csr: func() []byte {
			return csr(t, key, func(r *x509.CertificateRequest) {
				r.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")}
				r.EmailAddresses = []string{"root@example.org"}
				bc, _ := asn1.Marshal(struct {
					IsCA bool `asn1:"optional"`
				}{true})
				r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}
			}, "spiffe://example.org/workload/x")
		}, check: func(t *testing.T, c *x509.Certificate) {
			if len(c.IPAddresses) != 0 || len(c.EmailAddresses) != 0 || c.IsCA || c.KeyUsage&x509.KeyUsageCertSign != 0 {
				t.Fatalf("CSR content leaked into the SVID: ip=%v email=%v ca=%v ku=%v", c.IPAddresses, c.EmailAddresses, c.IsCA, c.KeyUsage)
			}
		}},
		{name: "fail/missing CSR", csr: func() []byte { return nil }, code: codes.InvalidArgument, msg: "missing CSR"},
		{name: "fail/malformed CSR", csr: func() []byte { return []byte("junk") }, code: codes.InvalidArgument, msg: "malformed CSR: "},
		{name: "fail/bad CSR signature", csr: func() []byte {
			der := csr(t, key, nil, "spiffe://example.org/workload/x")
			der[len(der)-3] ^= 0xff
			return der
		}, code: codes.InvalidArgument, msg: "failed to verify CSR signature: "},
		{name: "fail/no URI SAN", csr: func() []byte { return csr(t, key, nil) }, code: codes.InvalidArgument, msg: "CSR URI SAN is required"},
		{name: "fail/two URI SANs (X5-01)", csr: func() []byte { return csr(t, key, nil, "spiffe://example.org/a", "spiffe://example.org/b") },
			code: codes.InvalidArgument, msg: "only one URI SAN is expected"},
		{name: "fail/T1 ID in another trust domain", csr: func() []byte { return csr(t, key, nil, "spiffe://other.example/x") },
			code: codes.InvalidArgument, msg: `CSR URI SAN is invalid: "spiffe://other.example/x" is not a member of trust domain "example.org"`},
		{name: "fail/root ID (X5-03)", csr: func() []byte { return csr(t, key, nil, "spiffe://example.org") },
			code: codes.InvalidArgument, msg: "CSR URI SAN is invalid: "},
		{name: "fail/reserved path", csr: func() []byte { return csr(t, key, nil, "spiffe://example.org/spire/agent/x") },
			code: codes.InvalidArgument, msg: "CSR URI SAN is invalid: "},
		{name: "fail/T5 dot segments", csr: func() []byte { return csr(t, key, nil, "spiffe://example.org/a/../spire/server") },
			code: codes.InvalidArgument, msg: "CSR URI SAN is invalid: "},
		{name: "fail/upper case trust domain", csr: func() []byte { return csr(t, key, nil, "spiffe://EXAMPLE.org/x") },
			code: codes.InvalidArgument, msg: "CSR URI SAN is invalid: "},
		{name: "fail/not a SPIFFE ID", csr: func() []byte { return csr(t, key, nil, "https://example.org/x") },
			code: codes.InvalidArgument, msg: "CSR URI SAN is invalid: scheme is missing or invalid"},
		{name: "fail/bad DNS name", csr: func() []byte {
			return csr(t, key, func(r *x509.CertificateRequest) { r.DNSNames = []string{"a.*.example"} }, "spiffe://example.org/x")
		}, code: codes.InvalidArgument, msg: "CSR DNS name is invalid: wildcard must be first label"},
		{name: "fail/wildcard overlap", csr: func() []byte {
			return csr(t, key, func(r *x509.CertificateRequest) { r.DNSNames = []string{"*.example.org", "a.example.org"} }, "spiffe://example.org/x")
		}, code: codes.InvalidArgument, msg: "CSR DNS name contains a wildcard that covers another non-wildcard name: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.srv.Logs.Reset()
			resp, err := f.client.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: tt.csr(), Ttl: tt.ttl})
			if tt.code != codes.OK {
				if status.Code(err) != tt.code || !strings.HasPrefix(status.Convert(err).Message(), tt.msg) {
					t.Fatalf("err = %v, want %v %q", err, tt.code, tt.msg)
				}
				if !f.srv.Logs.Contains("Invalid argument") {
					t.Fatalf("refusal not logged: %s", f.srv.Logs.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(resp.Svid.CertChain[0])
			if err != nil {
				t.Fatal(err)
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/workload/x" || resp.Svid.Id.Path != "/workload/x" {
				t.Fatalf("SVID ID: %v %v", leaf.URIs, resp.Svid.Id)
			}
			if resp.Svid.ExpiresAt != leaf.NotAfter.Unix() {
				t.Fatalf("expires_at %d != %d", resp.Svid.ExpiresAt, leaf.NotAfter.Unix())
			}
			if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
				t.Fatal("SVID does not certify the CSR key")
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: f.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatalf("SVID does not chain to the bundle: %v", err)
			}
			if tt.check != nil {
				tt.check(t, leaf)
			}
		})
	}
}

func TestMintJWTSVID(t *testing.T) {
	f := setup(t)
	for _, tt := range []struct {
		name string
		req  *svidv1.MintJWTSVIDRequest
		code codes.Code
		msg  string
	}{
		{name: "ok/one audience", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "example.org", Path: "/w"}, Audience: []string{"db"}, Ttl: 60}},
		{name: "ok/default TTL", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "example.org", Path: "/w"}, Audience: []string{"a", "b"}}},
		{name: "fail/no audience", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "example.org", Path: "/w"}},
			code: codes.InvalidArgument, msg: "at least one audience is required"},
		{name: "fail/no ID", req: &svidv1.MintJWTSVIDRequest{Audience: []string{"a"}}, code: codes.InvalidArgument, msg: "invalid SPIFFE ID: request must specify SPIFFE ID"},
		{name: "fail/ID in another trust domain", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "other.example", Path: "/w"}, Audience: []string{"a"}},
			code: codes.InvalidArgument, msg: `invalid SPIFFE ID: "spiffe://other.example/w" is not a member of trust domain "example.org"`},
		{name: "fail/malformed ID", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "example.org", Path: "/a/"}, Audience: []string{"a"}},
			code: codes.InvalidArgument, msg: "invalid SPIFFE ID: path cannot have a trailing slash"},
		{name: "fail/reserved ID", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "example.org", Path: "/spire/server"}, Audience: []string{"a"}},
			code: codes.InvalidArgument, msg: "invalid SPIFFE ID: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.client.MintJWTSVID(ctx, tt.req)
			if tt.code != codes.OK {
				if status.Code(err) != tt.code || !strings.HasPrefix(status.Convert(err).Message(), tt.msg) {
					t.Fatalf("err = %v, want %v %q", err, tt.code, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.ParseSigned(resp.Svid.Token, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			var c jwt.Claims
			if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
				t.Fatal(err)
			}
			if c.Subject != "spiffe://example.org/w" || strings.Join(c.Audience, ",") != strings.Join(tt.req.Audience, ",") {
				t.Fatalf("claims %+v", c)
			}
			if resp.Svid.ExpiresAt != c.Expiry.Time().Unix() || resp.Svid.IssuedAt != c.IssuedAt.Time().Unix() || resp.Svid.Id.Path != "/w" {
				t.Fatalf("svid %v vs claims %+v", resp.Svid, c)
			}
			if tt.req.Ttl == 60 && resp.Svid.ExpiresAt-resp.Svid.IssuedAt != 60 {
				t.Fatalf("lifetime %d", resp.Svid.ExpiresAt-resp.Svid.IssuedAt)
			}
		})
	}
}

func TestAgentRPCsWithoutEntries(t *testing.T) {
	svc, err := svid.New(svid.Config{TrustDomain: td, CA: apitest.NewCA(t, td, datastoretest.OpenSQLite(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("err = %v", err)
	}
}
