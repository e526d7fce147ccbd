package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type testCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newTestCA makes a CA certificate signed by parent (self-signed when nil).
func newTestCA(tb testing.TB, name string, parent *testCert, mod func(*x509.Certificate)) *testCert {
	tb.Helper()
	key := newECKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if mod != nil {
		mod(tmpl)
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	requireNoError(tb, err)
	cert, err := x509.ParseCertificate(der)
	requireNoError(tb, err)
	return &testCert{cert: cert, key: key}
}

func writePEM(tb testing.TB, dir, name string, blocks ...*pem.Block) string {
	tb.Helper()
	var buf bytes.Buffer
	for _, b := range blocks {
		requireNoError(tb, pem.Encode(&buf, b))
	}
	path := filepath.Join(dir, name)
	requireNoError(tb, os.WriteFile(path, buf.Bytes(), 0o600))
	return path
}

func ecBlock(tb testing.TB, k crypto.Signer) *pem.Block {
	tb.Helper()
	der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	requireNoError(tb, err)
	return &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
}

func certBlock(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }

func pkcs8Block(tb testing.TB, k crypto.Signer) *pem.Block {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	requireNoError(tb, err)
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

// TestUpstreamDisk_SelfSignedRoot: with a self-signed upstream root and no
// bundle file, our CA is an intermediate under it, the bundle holds the
// upstream root and not our CA, SVID chains verify to that root, and the
// authority's upstream ID is the root's SKID.
func TestUpstreamDisk_SelfSignedRoot(t *testing.T) {
	dir := t.TempDir()
	root := newTestCA(t, "upstream root", nil, nil)
	up, err := NewUpstreamDisk(writePEM(t, dir, "ca.pem", certBlock(root.cert)), writePEM(t, dir, "ca.key", pkcs8Block(t, root.key)), "")
	requireNoError(t, err)
	env := newTestEnv(t, func(c *Config) {
		c.Upstream = up
		c.Clock = func() time.Time { return time.Now().Truncate(time.Second) }
	})
	ctx := context.Background()

	b := env.bundle(t)
	if len(b.X509Authorities) != 1 || !bytes.Equal(b.X509Authorities[0].Certificate, root.cert.Raw) {
		t.Fatal("the bundle must hold exactly the upstream root")
	}
	ours := env.ca.signX509.Load().cert
	if !bytes.Equal(ours.RawIssuer, root.cert.RawSubject) || !ours.IsCA || len(ours.URIs) != 1 || ours.URIs[0].String() != "spiffe://example.org" {
		t.Fatalf("our CA: issuer %s, cA %v, URIs %v", ours.Issuer, ours.IsCA, ours.URIs)
	}
	info := env.ca.X509Authorities().Active
	if info.UpstreamAuthorityID != AuthorityIDFromSKID(root.cert.SubjectKeyId) || info.AuthorityID != AuthorityIDFromSKID(ours.SubjectKeyId) {
		t.Fatalf("authority %+v", info)
	}
	key := newECKey(t)
	chain := signSVID(t, env.ca, "spiffe://example.org/w", &key.PublicKey)
	if len(chain) != 2 || !bytes.Equal(chain[1].Raw, ours.Raw) {
		t.Fatalf("chain has %d certificates, want leaf and our intermediate", len(chain))
	}
	if _, _, err := x509svid.Verify(chain, x509BundleOf(t, env)); err != nil {
		t.Fatalf("chain does not verify to the upstream root: %v", err)
	}
	// Upstream-managed local authorities cannot be tainted or revoked.
	_, err = env.ca.TaintX509Authority(ctx, info.AuthorityID)
	requireErr(t, err, ErrUpstreamConfigured, "local authority can't be tainted if there is an upstream authority")
	_, err = env.ca.RevokeX509Authority(ctx, info.AuthorityID)
	requireErr(t, err, ErrUpstreamConfigured, "local authority can't be revoked if there is an upstream authority")
	// Prepared CAs are upstream-signed too and the bundle does not grow.
	p, err := env.ca.PrepareX509Authority(ctx)
	requireNoError(t, err)
	if p.UpstreamAuthorityID != info.UpstreamAuthorityID || len(env.bundle(t).X509Authorities) != 1 {
		t.Fatalf("prepared %+v, bundle %d roots", p, len(env.bundle(t).X509Authorities))
	}
}

// TestUpstreamDisk_IntermediateWithBundle: the cert file holds an upstream
// intermediate, the bundle file the root; SVID chains carry our CA and the
// upstream intermediate, not the root, and our CA's lifetime is capped at
// the upstream certificate's.
func TestUpstreamDisk_IntermediateWithBundle(t *testing.T) {
	dir := t.TempDir()
	root := newTestCA(t, "root", nil, nil)
	inter := newTestCA(t, "intermediate", root, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(6 * time.Hour) })
	up, err := NewUpstreamDisk(
		writePEM(t, dir, "chain.pem", certBlock(inter.cert)),
		writePEM(t, dir, "inter.key", pkcs8Block(t, inter.key)),
		writePEM(t, dir, "bundle.pem", certBlock(root.cert)),
	)
	requireNoError(t, err)
	env := newTestEnv(t, func(c *Config) {
		c.Upstream = up
		c.Clock = func() time.Time { return time.Now().Truncate(time.Second) }
	})
	key := newECKey(t)
	chain := signSVID(t, env.ca, "spiffe://example.org/w", &key.PublicKey)
	if len(chain) != 3 || !bytes.Equal(chain[2].Raw, inter.cert.Raw) {
		t.Fatalf("chain has %d certificates, want leaf, our CA, upstream intermediate", len(chain))
	}
	if _, _, err := x509svid.Verify(chain, x509BundleOf(t, env)); err != nil {
		t.Fatalf("chain does not verify to the root: %v", err)
	}
	if b := env.bundle(t); len(b.X509Authorities) != 1 || !bytes.Equal(b.X509Authorities[0].Certificate, root.cert.Raw) {
		t.Fatal("the bundle must hold the root from bundle_file_path")
	}
	if ours := chain[1]; !ours.NotAfter.Equal(inter.cert.NotAfter) {
		t.Fatalf("our CA expires %s, want the upstream's %s", ours.NotAfter, inter.cert.NotAfter)
	}
	if !chain[0].NotAfter.Equal(env.clock.Now().Add(time.Hour)) {
		t.Fatal("leaf lifetime")
	}
}

// TestUpstreamDisk_Files: bad inputs give errors that name the file.
func TestUpstreamDisk_Files(t *testing.T) {
	dir := t.TempDir()
	root := newTestCA(t, "root", nil, nil)
	other := newTestCA(t, "other", nil, nil)
	inter := newTestCA(t, "inter", root, nil)
	leafLike := newTestCA(t, "not a ca", nil, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature })
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	requireNoError(t, err)
	rsaRoot := newTestCA(t, "rsa root", nil, nil)
	{ // re-sign an RSA root
		tmpl := *rsaRoot.cert
		tmpl.SignatureAlgorithm, tmpl.PublicKey, tmpl.SubjectKeyId = 0, nil, nil
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &rsaKey.PublicKey, rsaKey)
		requireNoError(t, err)
		rsaRoot.cert, _ = x509.ParseCertificate(der)
		rsaRoot.key = rsaKey
	}
	rootPEM := writePEM(t, dir, "root.pem", certBlock(root.cert))
	rootKey := writePEM(t, dir, "root.key", pkcs8Block(t, root.key))
	for _, tt := range []struct {
		name             string
		cert, key, bndle string
		msg              string
		file             string // the path the error must name
	}{
		{name: "ok/pkcs8 self-signed", cert: rootPEM, key: rootKey},
		{name: "ok/SEC 1 EC key", cert: rootPEM, key: writePEM(t, dir, "ec.key", ecBlock(t, root.key))},
		{name: "ok/PKCS#1 RSA key", cert: writePEM(t, dir, "rsa.pem", certBlock(rsaRoot.cert)),
			key: writePEM(t, dir, "rsa.key", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})},
		{name: "fail/key does not match", cert: rootPEM, key: writePEM(t, dir, "other.key", pkcs8Block(t, other.key)), msg: "does not match the certificate", file: "other.key"},
		{name: "fail/not a CA", cert: writePEM(t, dir, "leaf.pem", certBlock(leafLike.cert)), key: writePEM(t, dir, "leaf.key", pkcs8Block(t, leafLike.key)), msg: "is not a CA", file: "leaf.pem"},
		{name: "ok/lone intermediate without bundle is its own anchor, as SPIRE", cert: writePEM(t, dir, "inter.pem", certBlock(inter.cert)), key: writePEM(t, dir, "inter.key", pkcs8Block(t, inter.key))},
		{name: "fail/two certificates without bundle", cert: writePEM(t, dir, "two.pem", certBlock(root.cert), certBlock(other.cert)), key: rootKey,
			msg: "holds 2 certificates", file: "two.pem"},
		{name: "fail/bundle does not anchor", cert: writePEM(t, dir, "inter2.pem", certBlock(inter.cert)), key: writePEM(t, dir, "inter2.key", pkcs8Block(t, inter.key)),
			bndle: writePEM(t, dir, "wrong-bundle.pem", certBlock(other.cert)), msg: "does not chain to the bundle", file: "wrong-bundle.pem"},
		{name: "fail/missing cert file", cert: filepath.Join(dir, "nope.pem"), key: rootKey, msg: "no such file", file: "nope.pem"},
		{name: "fail/no certificate in file", cert: writePEM(t, dir, "empty.pem", &pem.Block{Type: "JUNK", Bytes: []byte{1}}), key: rootKey, msg: "no PEM certificate", file: "empty.pem"},
		{name: "fail/no key in file", cert: rootPEM, key: writePEM(t, dir, "nokey.pem", certBlock(root.cert)), msg: "no PEM private key", file: "nokey.pem"},
		{name: "fail/garbage key", cert: rootPEM, key: writePEM(t, dir, "bad.key", &pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")}), msg: "private key in", file: "bad.key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewUpstreamDisk(tt.cert, tt.key, tt.bndle)
			if tt.msg == "" {
				requireNoError(t, err)
				return
			}
			requireErr(t, err, nil, tt.msg)
			if !strings.Contains(err.Error(), tt.file) {
				t.Fatalf("error %q does not name %s", err, tt.file)
			}
		})
	}
}

// TestUpstreamDisk_Validity: an expired or not yet valid upstream
// certificate stops New and Init with an error naming the file.
func TestUpstreamDisk_Validity(t *testing.T) {
	dir := t.TempDir()
	root := newTestCA(t, "root", nil, nil)
	certFile := writePEM(t, dir, "ca.pem", certBlock(root.cert))
	up, err := NewUpstreamDisk(certFile, writePEM(t, dir, "ca.key", pkcs8Block(t, root.key)), "")
	requireNoError(t, err)
	for _, tt := range []struct {
		name string
		at   time.Time
		msg  string
	}{
		{name: "fail/expired", at: root.cert.NotAfter.Add(time.Second), msg: "expired at"},
		{name: "fail/not yet valid", at: root.cert.NotBefore.Add(-time.Second), msg: "is not valid before"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{TrustDomain: testTD, KeyManager: NewMemoryKeyManager(), Store: newTestStore(t), Upstream: up, Clock: func() time.Time { return tt.at }})
			requireNoError(t, err)
			err = c.Init(context.Background())
			requireErr(t, err, nil, tt.msg)
			if !strings.Contains(err.Error(), certFile) {
				t.Fatalf("error %q does not name %s", err, certFile)
			}
			if c.signX509.Load() != nil {
				t.Fatal("a CA became active")
			}
		})
	}
}
