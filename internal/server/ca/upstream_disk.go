package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// UpstreamDisk is SPIRE's "disk" UpstreamAuthority: a CA certificate and key
// on disk that sign our X.509 CA, so our CA becomes an intermediate under the
// upstream root. The trust bundle then holds the upstream roots, not our CA.
//
// With bundle_file_path unset, the certificate file must hold exactly one
// CA certificate, which becomes the trust anchor (normally self-signed; as
// in SPIRE, a lone intermediate is accepted as its own anchor). With it set, the certificate
// file holds the signing certificate first and then any intermediates, and
// the bundle file holds the roots they chain to. The files are read again
// each time a CA is signed, so they can be replaced without a restart; if a
// reload fails, the last good files are used. Safe for concurrent use.
type UpstreamDisk struct {
	certFile, keyFile, bundleFile string

	mu  sync.Mutex
	cur *upstreamMaterial
}

type upstreamMaterial struct {
	cert  *x509.Certificate   // signs our CA
	key   crypto.Signer       // matches cert
	chain []*x509.Certificate // cert file certificates that are not roots, sent after our CA
	roots []*x509.Certificate // trust bundle roots
}

// NewUpstreamDisk loads and checks the files: PEM certificates, a PEM key in
// PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) form that matches the first certificate,
// a CA certificate (cA=true, keyCertSign when key usage is present), and a
// chain that verifies to the bundle (or a self-signed certificate). Errors
// name the file at fault. Validity against the current time is checked by
// the CA with its clock (New and every signing).
func NewUpstreamDisk(certFile, keyFile, bundleFile string) (*UpstreamDisk, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("ca: upstream authority: cert_file_path and key_file_path are required")
	}
	u := &UpstreamDisk{certFile: certFile, keyFile: keyFile, bundleFile: bundleFile}
	m, err := u.load()
	if err != nil {
		return nil, err
	}
	u.cur = m
	return u, nil
}

// Roots returns the upstream trust bundle roots.
func (u *UpstreamDisk) Roots() []*x509.Certificate {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.cur.roots)
}

func (u *UpstreamDisk) material() *upstreamMaterial {
	u.mu.Lock()
	defer u.mu.Unlock()
	if m, err := u.load(); err == nil {
		u.cur = m
	}
	return u.cur
}

// checkValidity reports an upstream signing certificate that is expired or
// not yet valid at now.
func (m *upstreamMaterial) checkValidity(certFile string, now time.Time) error {
	switch {
	case now.After(m.cert.NotAfter):
		return fmt.Errorf("ca: upstream authority: certificate in %q expired at %s", certFile, m.cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(m.cert.NotBefore):
		return fmt.Errorf("ca: upstream authority: certificate in %q is not valid before %s", certFile, m.cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// check is used by New to refuse an expired upstream certificate early.
func (u *UpstreamDisk) check(now time.Time) error {
	return u.material().checkValidity(u.certFile, now)
}

// signCA signs tmpl (our CA) with the upstream key, capping its NotAfter at
// the upstream certificate's, and returns our CA, the certificates to send
// after it, and the roots to publish.
func (u *UpstreamDisk) signCA(tmpl *x509.Certificate, now time.Time) (*x509.Certificate, []*x509.Certificate, []*x509.Certificate, error) {
	m := u.material()
	if err := m.checkValidity(u.certFile, now); err != nil {
		return nil, nil, nil, err
	}
	if tmpl.NotAfter.After(m.cert.NotAfter) {
		tmpl.NotAfter = m.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.cert, tmpl.PublicKey, m.key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ca: upstream authority: sign X509 CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ca: upstream authority: parse X509 CA: %w", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         pool(m.roots),
		Intermediates: pool(m.chain),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, nil, nil, fmt.Errorf("ca: upstream authority: signed X509 CA does not verify: %w", err)
	}
	return cert, slices.Clone(m.chain), slices.Clone(m.roots), nil
}

func (u *UpstreamDisk) load() (*upstreamMaterial, error) {
	certs, err := readCertificates(u.certFile)
	if err != nil {
		return nil, err
	}
	key, err := readPrivateKey(u.keyFile)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := key.Public().(equaler); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("ca: upstream authority: key in %q does not match the certificate in %q", u.keyFile, u.certFile)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || (cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0) {
		return nil, fmt.Errorf("ca: upstream authority: certificate in %q is not a CA (needs cA=true and keyCertSign)", u.certFile)
	}

	var roots []*x509.Certificate
	if u.bundleFile == "" {
		if len(certs) != 1 {
			return nil, fmt.Errorf("ca: upstream authority: %q holds %d certificates; without bundle_file_path only one self-signed CA is supported", u.certFile, len(certs))
		}
		roots = certs
	} else if roots, err = readCertificates(u.bundleFile); err != nil {
		return nil, err
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         pool(roots),
		Intermediates: pool(certs),
		CurrentTime:   cert.NotBefore, // expiry is checked against the CA's clock
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		if u.bundleFile == "" {
			return nil, fmt.Errorf("ca: upstream authority: certificate in %q does not verify: %w", u.certFile, err)
		}
		return nil, fmt.Errorf("ca: upstream authority: certificate in %q does not chain to the bundle in %q: %w", u.certFile, u.bundleFile, err)
	}
	var chain []*x509.Certificate
	for _, c := range certs {
		if !slices.ContainsFunc(roots, func(r *x509.Certificate) bool { return bytes.Equal(r.Raw, c.Raw) }) {
			chain = append(chain, c)
		}
	}
	return &upstreamMaterial{cert: cert, key: key, chain: chain, roots: roots}, nil
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream authority: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca: upstream authority: certificate in %q: %w", path, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("ca: upstream authority: no PEM certificate in %q", path)
	}
	return certs, nil
}

func readPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream authority: %w", err)
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("ca: upstream authority: no PEM private key in %q", path)
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ca: upstream authority: private key in %q: %w", path, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("ca: upstream authority: private key in %q: %T cannot sign", path, key)
		}
		return signer, nil
	}
}
