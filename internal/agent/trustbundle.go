package agent

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Trust bundle formats (agent trust_bundle_format).
const (
	BundleFormatPEM    = "pem"
	BundleFormatSPIFFE = "spiffe"
)

// LoadTrustBundle reads the bootstrap trust bundle at path: PEM
// certificates (format "pem", the default when empty) or a SPIFFE bundle
// document (format "spiffe", JWKS) of td. It returns the X.509 authorities.
func LoadTrustBundle(path, format string, td spiffeid.TrustDomain) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("load trust bundle: %w", err))
	}
	var certs []*x509.Certificate
	switch format {
	case BundleFormatPEM, "":
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, wrapErr(fmt.Errorf("load trust bundle %s: %w", path, err))
			}
			certs = append(certs, cert)
		}
	case BundleFormatSPIFFE:
		b, err := spiffebundle.Parse(td, data)
		if err != nil {
			return nil, wrapErr(fmt.Errorf("load trust bundle %s: %w", path, err))
		}
		certs = b.X509Authorities()
	default:
		return nil, wrapErr(fmt.Errorf("unknown trust bundle format %q", format))
	}
	if len(certs) == 0 {
		return nil, wrapErr(errors.New("load trust bundle: no certificates found in " + path))
	}
	return certs, nil
}
