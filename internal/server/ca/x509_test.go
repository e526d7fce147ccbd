package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// x509BundleOf is the published trust bundle as go-spiffe sees it.
func x509BundleOf(tb testing.TB, env *testEnv) *x509bundle.Bundle {
	tb.Helper()
	var roots []*x509.Certificate
	for _, a := range env.bundle(tb).X509Authorities {
		c, err := x509.ParseCertificate(a.Certificate)
		requireNoError(tb, err)
		roots = append(roots, c)
	}
	return x509bundle.FromX509Authorities(testTD, roots)
}

func extByOID(c *x509.Certificate, oid asn1.ObjectIdentifier) *pkix.Extension {
	for i := range c.Extensions {
		if c.Extensions[i].Id.Equal(oid) {
			return &c.Extensions[i]
		}
	}
	return nil
}

var (
	oidKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSAN         = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstr = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidAKID        = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// TestSignX509SVID_Profile checks an issued SVID against the X509-SVID
// spec and against the profile of real SPIRE 1.13 SVIDs
// (spire-reference/outputs/certs/workload-svid-*.txt).
func TestSignX509SVID_Profile(t *testing.T) {
	env := newTestEnv(t, nil)
	key := newECKey(t)
	now := env.clock.Now()
	for _, tt := range []struct {
		name     string
		params   X509SVIDParams
		subject  string
		dnsNames []string
	}{
		{name: "ok/default subject", params: X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/workload/federated")}, subject: "O=SPIRE,C=US"},
		{
			name:     "ok/dns names, first is CN",
			params:   X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/workload/gateway"), DNSNames: []string{"gateway.example.org", "gw.example.org"}},
			subject:  "CN=gateway.example.org,O=SPIRE,C=US",
			dnsNames: []string{"gateway.example.org", "gw.example.org"},
		},
		{
			name:    "ok/custom subject",
			params:  X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), Subject: pkix.Name{Organization: []string{"Hive"}}},
			subject: "O=Hive",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.params.PublicKey = &key.PublicKey
			chain, err := env.ca.SignX509SVID(context.Background(), tt.params)
			requireNoError(t, err)
			if len(chain) != 1 {
				t.Fatalf("self-signed CA: chain has %d certificates, want the leaf only", len(chain))
			}
			leaf := chain[0]
			// X5-01: exactly one URI SAN, the requested ID.
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != tt.params.SPIFFEID.String() {
				t.Fatalf("X5-01: URIs = %v", leaf.URIs)
			}
			// X5-03: leaf IDs have a path.
			if leaf.URIs[0].Path == "" {
				t.Fatal("X5-03: leaf ID without path")
			}
			// X5-07: cA=false with basic constraints present and critical, as SPIRE.
			if !leaf.BasicConstraintsValid || leaf.IsCA || !extByOID(leaf, oidBasicConstr).Critical {
				t.Fatalf("X5-07: basic constraints valid=%v cA=%v", leaf.BasicConstraintsValid, leaf.IsCA)
			}
			// X5-08, X5-10: key usage present, critical, digitalSignature, never keyCertSign/cRLSign.
			ku := extByOID(leaf, oidKeyUsage)
			if ku == nil || !ku.Critical {
				t.Fatal("X5-08: key usage missing or not critical")
			}
			if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
				t.Fatalf("X5-10: key usage %b", leaf.KeyUsage)
			}
			// SPIRE's profile: Digital Signature, Key Encipherment, Key Agreement.
			if leaf.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment|x509.KeyUsageKeyAgreement {
				t.Fatalf("key usage %b differs from SPIRE's", leaf.KeyUsage)
			}
			// X5-11: EKU serverAuth and clientAuth.
			if !reflect.DeepEqual(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Fatalf("X5-11: EKU %v", leaf.ExtKeyUsage)
			}
			// X5-04: a non-empty subject needs no critical SAN; SPIRE leaves it non-critical.
			if extByOID(leaf, oidSAN).Critical {
				t.Fatal("X5-04: SAN critical with a non-empty subject")
			}
			if got := leaf.Subject.String(); got != tt.subject {
				t.Fatalf("subject %q, want %q", got, tt.subject)
			}
			if !reflect.DeepEqual(leaf.DNSNames, tt.dnsNames) {
				t.Fatalf("DNS names %v, want %v", leaf.DNSNames, tt.dnsNames)
			}
			// SKID and AKID present, AKID = the CA's SKID; SPIRE's 10 s back-dating; 1h default.
			ca := env.ca.signX509.Load().cert
			if len(leaf.SubjectKeyId) != 20 || !bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId) || extByOID(leaf, oidAKID) == nil {
				t.Fatalf("SKID %x AKID %x, CA SKID %x", leaf.SubjectKeyId, leaf.AuthorityKeyId, ca.SubjectKeyId)
			}
			if !leaf.NotBefore.Equal(now.Add(-10*time.Second)) || !leaf.NotAfter.Equal(now.Add(time.Hour)) {
				t.Fatalf("validity %s..%s, want now-10s..now+1h", leaf.NotBefore, leaf.NotAfter)
			}
			if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 129 {
				t.Fatalf("serial %v", leaf.SerialNumber)
			}
			// ID-15: ID and key are in the signed part: the signature covers RawTBSCertificate, which holds both.
			requireNoError(t, leaf.CheckSignatureFrom(ca))
			spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
			requireNoError(t, err)
			if !bytes.Contains(leaf.RawTBSCertificate, spki) || !bytes.Contains(leaf.RawTBSCertificate, []byte(tt.params.SPIFFEID.String())) {
				t.Fatal("ID-15: SPIFFE ID or public key outside the signed TBSCertificate")
			}
			// X5-12, X5-13 from the validator side: go-spiffe accepts it against the published bundle.
			id, _, err := x509svid.Verify(chain, x509BundleOf(t, env), x509svid.WithTime(now))
			requireNoError(t, err)
			if id != tt.params.SPIFFEID {
				t.Fatalf("verified ID %s", id)
			}
		})
	}
}

// TestSignX509SVID_MatchesCryptoX509 proves the hand-built leaf is what
// crypto/x509 would build: the TBS bytes equal x509.CreateCertificate's for
// the same template, and the returned Certificate equals
// x509.ParseCertificate of its Raw.
func TestSignX509SVID_MatchesCryptoX509(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	requireNoError(t, err)
	rsaLeaf, err := rsa.GenerateKey(rand.Reader, 2048)
	requireNoError(t, err)
	for _, tt := range []struct {
		name    string
		caKey   string
		leafKey crypto.PublicKey
		params  X509SVIDParams
	}{
		{name: "ok/p256 default subject", leafKey: &newECKey(t).PublicKey},
		{name: "ok/p256 dns names", leafKey: &newECKey(t).PublicKey, params: X509SVIDParams{DNSNames: []string{"a.example.org", "b.example.org"}}},
		{name: "ok/p256 custom subject", leafKey: &newECKey(t).PublicKey, params: X509SVIDParams{Subject: pkix.Name{Country: []string{"DE"}, Organization: []string{"Hive"}, OrganizationalUnit: []string{"x"}}}},
		{name: "ok/p384 leaf key", leafKey: &p384.PublicKey},
		{name: "ok/rsa leaf key takes the parse path", leafKey: &rsaLeaf.PublicKey},
		{name: "ok/p384 CA", caKey: KeyTypeECP384, leafKey: &newECKey(t).PublicKey},
		{name: "ok/rsa CA", caKey: KeyTypeRSA2048, leafKey: &newECKey(t).PublicKey},
		{name: "ok/long ID and many DNS names", leafKey: &newECKey(t).PublicKey, params: X509SVIDParams{
			SPIFFEID: mustID(t, "spiffe://example.org/"+strings.Repeat("a", 300)),
			DNSNames: []string{strings.Repeat("d", 200) + ".example.org", "x.example.org"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, func(c *Config) { c.KeyType = tt.caKey })
			p := tt.params
			if p.SPIFFEID.IsZero() {
				p.SPIFFEID = mustID(t, "spiffe://example.org/ns/default/sa/x")
			}
			p.PublicKey = tt.leafKey
			chain, err := env.ca.SignX509SVID(context.Background(), p)
			requireNoError(t, err)
			got := chain[0]

			parsed, err := x509.ParseCertificate(got.Raw)
			requireNoError(t, err)
			if !parsed.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(got.PublicKey) {
				t.Fatal("public key differs from the parsed one")
			}
			g, w := *got, *parsed
			g.PublicKey, w.PublicKey = nil, nil
			if !reflect.DeepEqual(g, w) {
				gv, wv := reflect.ValueOf(g), reflect.ValueOf(w)
				for i := range gv.NumField() {
					if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
						t.Errorf("field %s: built %#v, parsed %#v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
					}
				}
				t.FailNow()
			}

			slot := env.ca.signX509.Load()
			tmpl := &x509.Certificate{
				SerialNumber:          got.SerialNumber,
				RawSubject:            got.RawSubject,
				NotBefore:             got.NotBefore,
				NotAfter:              got.NotAfter,
				KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
				ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
				BasicConstraintsValid: true,
				SubjectKeyId:          got.SubjectKeyId,
				DNSNames:              p.DNSNames,
				URIs:                  got.URIs,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, slot.cert, tt.leafKey, slot.signer)
			requireNoError(t, err)
			want, err := x509.ParseCertificate(der)
			requireNoError(t, err)
			if !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
				t.Fatalf("TBS differs from crypto/x509's:\n got %x\nwant %x", got.RawTBSCertificate, want.RawTBSCertificate)
			}
			requireNoError(t, got.CheckSignatureFrom(slot.cert))
		})
	}
}

// TestLeafSigner_EmptySubjectMakesSANCritical covers X5-04 on the encoder:
// the CA never issues an empty subject (SPIRE's default applies), but the
// encoder marks the SAN critical when it is empty, as crypto/x509 does.
func TestLeafSigner_EmptySubjectMakesSANCritical(t *testing.T) {
	env := newTestEnv(t, nil)
	slot := env.ca.signX509.Load()
	key := newECKey(t)
	now := env.clock.Now()
	leaf, err := slot.leaf.sign(leafFields{subject: []byte{0x30, 0}, publicKey: &key.PublicKey, notBefore: now, notAfter: now.Add(time.Hour),
		id: mustID(t, "spiffe://example.org/w")})
	requireNoError(t, err)
	parsed, err := x509.ParseCertificate(leaf.Raw)
	requireNoError(t, err)
	if san := extByOID(parsed, oidSAN); san == nil || !san.Critical { // X5-04
		t.Fatal("X5-04: SAN not critical with an empty subject")
	}
}

// TestSignX509SVID_Refusals: the CA issues only IDs of its trust domain
// with a path (X5-03, ID-12) and refuses bad parameters without touching
// the bundle.
func TestSignX509SVID_Refusals(t *testing.T) {
	env := newTestEnv(t, nil)
	key := newECKey(t)
	long := "spiffe://example.org/" + strings.Repeat("a", 2048-len("spiffe://example.org/"))
	for _, tt := range []struct {
		name   string
		params X509SVIDParams
		msg    string
	}{
		{name: "fail/zero ID", params: X509SVIDParams{PublicKey: &key.PublicKey}, msg: "SPIFFE ID is empty"},
		{name: "fail/foreign trust domain", params: X509SVIDParams{SPIFFEID: mustID(t, "spiffe://other.org/w"), PublicKey: &key.PublicKey}, msg: `"spiffe://other.org/w" is not a member of trust domain "example.org"`},
		{name: "fail/X5-03 root ID", params: X509SVIDParams{SPIFFEID: testTD.ID(), PublicKey: &key.PublicKey}, msg: `"spiffe://example.org" has no path`},
		{name: "fail/ID-12 2049 bytes", params: X509SVIDParams{SPIFFEID: mustID(t, long+"b"), PublicKey: &key.PublicKey}, msg: "2049 bytes, more than 2048"},
		{name: "fail/no public key", params: X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w")}, msg: "public key is required"},
		{name: "fail/invalid EC point", params: X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), PublicKey: &ecdsa.PublicKey{Curve: elliptic.P256(), X: bigOne(), Y: bigOne()}}, msg: "invalid EC point"},
		{name: "fail/empty DNS name", params: X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), PublicKey: &key.PublicKey, DNSNames: []string{""}}, msg: `DNS name ""`},
		{name: "fail/non-ASCII DNS name", params: X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), PublicKey: &key.PublicKey, DNSNames: []string{"bücher.example"}}, msg: "not a printable ASCII name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := env.bundle(t)
			chain, err := env.ca.SignX509SVID(context.Background(), tt.params)
			requireErr(t, err, ErrInvalidParams, tt.msg)
			if chain != nil {
				t.Fatal("refusal returned certificates")
			}
			if after := env.bundle(t); !reflect.DeepEqual(before, after) {
				t.Fatal("refusal changed the bundle")
			}
		})
	}
	t.Run("ok/ID-12 2048 bytes", func(t *testing.T) {
		chain := signSVID(t, env.ca, long, &key.PublicKey)
		if got := chain[0].URIs[0].String(); len(got) != 2048 {
			t.Fatalf("issued ID is %d bytes", len(got))
		}
	})
	t.Run("fail/before Init", func(t *testing.T) {
		c, err := New(Config{TrustDomain: testTD, KeyManager: NewMemoryKeyManager(), Store: newTestStore(t)})
		requireNoError(t, err)
		_, err = c.SignX509SVID(context.Background(), X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), PublicKey: &key.PublicKey})
		requireErr(t, err, ErrNoActiveAuthority, "X509 CA is not available for signing")
	})
}

// TestSignX509SVID_T1_SignsOnlyParams: the CA puts exactly the caller's ID,
// key, DNS names and TTL in the SVID and nothing else (threat T1: the
// caller passes entry data, never CSR contents).
func TestSignX509SVID_T1_SignsOnlyParams(t *testing.T) {
	env := newTestEnv(t, nil)
	key := newECKey(t)
	chain, err := env.ca.SignX509SVID(context.Background(), X509SVIDParams{
		SPIFFEID:  mustID(t, "spiffe://example.org/ns/prod/sa/api"),
		PublicKey: &key.PublicKey,
		TTL:       17 * time.Minute,
		DNSNames:  []string{"api.prod"},
	})
	requireNoError(t, err)
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/ns/prod/sa/api" || len(leaf.IPAddresses) != 0 ||
		len(leaf.EmailAddresses) != 0 || !reflect.DeepEqual(leaf.DNSNames, []string{"api.prod"}) {
		t.Fatalf("SANs: %v %v %v %v", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Fatal("T1: leaf key is not the requested key")
	}
	if got := leaf.NotAfter.Sub(env.clock.Now()); got != 17*time.Minute {
		t.Fatalf("T1: lifetime %s, want the requested 17m", got)
	}
	if len(leaf.Extensions) != 6 {
		t.Fatalf("extensions: %d, want KU, EKU, BC, SKID, AKID, SAN", len(leaf.Extensions))
	}
}

// TestSignX509SVID_TTL: TTL 0 is the configured default, a TTL past the
// CA's expiry is capped at it, and NotBefore is back-dated 10 s.
func TestSignX509SVID_TTL(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfgTTL  time.Duration
		caTTL   time.Duration
		ttl     time.Duration
		advance time.Duration
		want    time.Duration // NotAfter - now
	}{
		{name: "ok/default 1h", want: time.Hour},
		{name: "ok/configured default", cfgTTL: 10 * time.Minute, want: 10 * time.Minute},
		{name: "ok/explicit", ttl: 3 * time.Hour, want: 3 * time.Hour},
		{name: "ok/capped at CA expiry", caTTL: 2 * time.Hour, ttl: 5 * time.Hour, want: 2 * time.Hour},
		{name: "ok/capped later in the CA life", caTTL: 2 * time.Hour, advance: 90 * time.Minute, want: 30 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, func(c *Config) { c.X509SVIDTTL, c.CATTL = tt.cfgTTL, tt.caTTL })
			env.clock.Add(tt.advance)
			key := newECKey(t)
			chain, err := env.ca.SignX509SVID(context.Background(), X509SVIDParams{SPIFFEID: mustID(t, "spiffe://example.org/w"), PublicKey: &key.PublicKey, TTL: tt.ttl})
			requireNoError(t, err)
			now := env.clock.Now()
			if got := chain[0].NotAfter.Sub(now); got != tt.want {
				t.Fatalf("lifetime %s, want %s", got, tt.want)
			}
			if got := now.Sub(chain[0].NotBefore); got != 10*time.Second {
				t.Fatalf("back-dated %s, want 10s", got)
			}
		})
	}
}

// TestCACertificate_Profile checks the self-signed CA against SPIRE's
// (spire-reference/outputs/certs/server-ca-initial.txt) and the spec.
func TestCACertificate_Profile(t *testing.T) {
	for _, tt := range []struct {
		name    string
		mod     func(*Config)
		subject func(serial string) string
		ttl     time.Duration
		pubAlg  x509.PublicKeyAlgorithm
	}{
		{name: "ok/defaults", subject: func(s string) string { return "SERIALNUMBER=" + s + ",O=SPIFFE,C=US" }, ttl: 24 * time.Hour, pubAlg: x509.ECDSA},
		{
			name: "ok/ca_subject and ttl",
			mod: func(c *Config) {
				c.Subject = pkix.Name{Organization: []string{"Hive"}, CommonName: "hive ca"}
				c.CATTL = 48 * time.Hour
			},
			subject: func(s string) string { return "SERIALNUMBER=" + s + ",CN=hive ca,O=Hive" },
			ttl:     48 * time.Hour,
			pubAlg:  x509.ECDSA,
		},
		{
			name:    "ok/subject with serialNumber kept",
			mod:     func(c *Config) { c.Subject = pkix.Name{Organization: []string{"Hive"}, SerialNumber: "7"} },
			subject: func(string) string { return "SERIALNUMBER=7,O=Hive" },
			ttl:     24 * time.Hour,
			pubAlg:  x509.ECDSA,
		},
		{name: "ok/rsa-2048", mod: func(c *Config) { c.KeyType = KeyTypeRSA2048 }, subject: func(s string) string { return "SERIALNUMBER=" + s + ",O=SPIFFE,C=US" }, ttl: 24 * time.Hour, pubAlg: x509.RSA},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, tt.mod)
			now := env.clock.Now()
			ca := env.ca.signX509.Load().cert
			if got, want := ca.Subject.String(), tt.subject(ca.SerialNumber.String()); got != want {
				t.Fatalf("subject %q, want %q", got, want)
			}
			if !bytes.Equal(ca.RawIssuer, ca.RawSubject) || ca.CheckSignatureFrom(ca) != nil {
				t.Fatal("CA is not self-signed")
			}
			// ID-14, X5-05: the signing certificate's ID is the trust domain, no path.
			if len(ca.URIs) != 1 || ca.URIs[0].String() != "spiffe://example.org" {
				t.Fatalf("X5-05: CA URIs %v", ca.URIs)
			}
			// X5-07, X5-08, X5-09: cA=true, critical key usage with keyCertSign (and cRLSign as SPIRE).
			if !ca.BasicConstraintsValid || !ca.IsCA || !extByOID(ca, oidBasicConstr).Critical {
				t.Fatal("X5-07: CA without critical cA=true")
			}
			if ku := extByOID(ca, oidKeyUsage); ku == nil || !ku.Critical || ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
				t.Fatalf("X5-08/X5-09: key usage %b", ca.KeyUsage)
			}
			if len(ca.ExtKeyUsage) != 0 || extByOID(ca, oidAKID) != nil {
				t.Fatal("SPIRE's CA has no EKU and no AKID")
			}
			skid, err := subjectKeyID(ca.PublicKey)
			requireNoError(t, err)
			if !bytes.Equal(ca.SubjectKeyId, skid) || env.ca.X509Authorities().Active.AuthorityID != AuthorityIDFromSKID(skid) {
				t.Fatal("SKID is not SHA-1 of the key or not the authority ID")
			}
			if !ca.NotBefore.Equal(now.Add(-10*time.Second)) || !ca.NotAfter.Equal(now.Add(tt.ttl)) {
				t.Fatalf("validity %s..%s", ca.NotBefore, ca.NotAfter)
			}
			if ca.PublicKeyAlgorithm != tt.pubAlg {
				t.Fatalf("key algorithm %v", ca.PublicKeyAlgorithm)
			}
		})
	}
}

// TestNew_Refusals covers New's checks, including ID-12's 255-byte trust
// domain limit.
func TestNew_Refusals(t *testing.T) {
	td255 := spiffeid.RequireTrustDomainFromString(strings.Repeat("a", 251) + ".org")
	td256 := spiffeid.RequireTrustDomainFromString(strings.Repeat("a", 252) + ".org")
	base := func() Config {
		return Config{TrustDomain: testTD, KeyManager: NewMemoryKeyManager(), Store: newTestStore(t)}
	}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		msg  string
	}{
		{name: "ok/ID-12 255-byte trust domain", mod: func(c *Config) { c.TrustDomain = td255 }},
		{name: "fail/ID-12 256-byte trust domain", mod: func(c *Config) { c.TrustDomain = td256 }, msg: "trust domain is 256 bytes, more than 255"},
		{name: "fail/no trust domain", mod: func(c *Config) { c.TrustDomain = spiffeid.TrustDomain{} }, msg: "trust domain is required"},
		{name: "fail/no key manager", mod: func(c *Config) { c.KeyManager = nil }, msg: "key manager is required"},
		{name: "fail/no store", mod: func(c *Config) { c.Store = nil }, msg: "store is required"},
		{name: "fail/bad key type", mod: func(c *Config) { c.KeyType = "ec-p521" }, msg: `unsupported key type "ec-p521"`},
		{name: "fail/bad jwt key type", mod: func(c *Config) { c.JWTKeyType = "ed25519" }, msg: `unsupported key type "ed25519"`},
		{name: "fail/negative ttl", mod: func(c *Config) { c.CATTL = -time.Second }, msg: "must not be negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.mod(&cfg)
			c, err := New(cfg)
			if tt.msg == "" {
				requireNoError(t, err)
				requireNoError(t, c.Init(context.Background()))
				return
			}
			requireErr(t, err, nil, tt.msg)
		})
	}
}
