package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

func mintCommands() []command {
	return []command{
		{name: "x509 mint", synopsis: "Issues an X509-SVID for any SPIFFE ID of the trust domain", setup: apiSetup(x509MintFlags)},
		{name: "jwt mint", synopsis: "Issues a JWT-SVID for any SPIFFE ID of the trust domain", setup: apiSetup(jwtMintFlags)},
	}
}

// ttlSeconds rounds a -ttl duration up to whole seconds.
func ttlSeconds(ttl time.Duration) (int32, error) {
	s := (ttl + time.Second - 1) / time.Second
	return toInt32(int(s))
}

func x509MintFlags(fs *flag.FlagSet, e *env) apiAction {
	spiffeID := fs.String("spiffeID", "", "SPIFFE ID to put in the X509-SVID")
	ttl := fs.Duration("ttl", 0, "Lifetime of the X509-SVID; 0 uses the server's default")
	var dnsNames stringsFlag
	fs.Var(&dnsNames, "dns", "DNS name to put in the X509-SVID; repeat for more")
	write := fs.String("write", "", "Directory where svid.pem, key.pem and bundle.pem are written instead of printing them")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *spiffeID == "" {
			return errors.New("spiffeID must be specified")
		}
		id, err := spiffeid.FromString(*spiffeID)
		if err != nil {
			return err
		}
		seconds, err := ttlSeconds(*ttl)
		if err != nil {
			return fmt.Errorf("invalid value for TTL: %w", err)
		}
		newKey := e.newKey
		if newKey == nil {
			newKey = func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
		}
		key, err := newKey()
		if err != nil {
			return fmt.Errorf("unable to generate key: %w", err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			URIs:     []*url.URL{id.URL()},
			DNSNames: dnsNames,
		}, key)
		if err != nil {
			return fmt.Errorf("unable to generate CSR: %w", err)
		}
		resp, err := c.svid().MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csr, Ttl: seconds})
		if err != nil {
			return fmt.Errorf("unable to mint SVID: %w", err)
		}
		if len(resp.GetSvid().GetCertChain()) == 0 {
			return errors.New("server response missing SVID chain")
		}
		bundle, err := c.bundle().GetBundle(ctx, &bundlev1.GetBundleRequest{})
		if err != nil {
			return fmt.Errorf("unable to get bundle: %w", err)
		}
		if len(bundle.X509Authorities) == 0 {
			return errors.New("server response missing X509 Authorities")
		}
		expiry := time.Unix(resp.Svid.ExpiresAt, 0)
		if expiry.Sub(e.clock()) < *ttl {
			_ = e.errorf("X509-SVID lifetime was capped shorter than specified ttl; expires %q\n", expiry.UTC().Format(time.RFC3339))
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		var roots [][]byte
		for _, a := range bundle.X509Authorities {
			roots = append(roots, a.Asn1)
		}
		svidPEM := pemBlocks("CERTIFICATE", resp.Svid.CertChain...)
		keyPEM := pemBlocks("PRIVATE KEY", keyDER)
		bundlePEM := pemBlocks("CERTIFICATE", roots...)
		if *write == "" {
			if output.json {
				return printStruct(e.stdout, []any{struct {
					X509SVID   [][]byte `json:"x509_svid"`
					PrivateKey []byte   `json:"private_key"`
					RootCAs    [][]byte `json:"root_cas"`
				}{resp.Svid.CertChain, keyDER, roots}})
			}
			return e.printf("X509-SVID:\n%s\nPrivate key:\n%s\nRoot CAs:\n%s\n", svidPEM, keyPEM, bundlePEM)
		}
		for _, f := range []struct {
			name, what string
			data       []byte
			mode       os.FileMode
			label      string
		}{
			{"svid.pem", "SVID", svidPEM, 0o644, "X509-SVID"},
			{"key.pem", "key", keyPEM, 0o600, "Private key"},
			{"bundle.pem", "bundle", bundlePEM, 0o644, "Root CAs"},
		} {
			path := filepath.Join(*write, f.name)
			if err := writeFile(path, f.data, f.mode); err != nil {
				return fmt.Errorf("unable to write %s: %w", f.what, err)
			}
			if err := e.printf("%s written to %s\n", f.label, path); err != nil {
				return err
			}
		}
		return nil
	}
}

func pemBlocks(typ string, ders ...[]byte) []byte {
	var b bytes.Buffer
	for _, der := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	}
	return b.Bytes()
}

// writeFile replaces path with data, with exactly the given permissions.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func jwtMintFlags(fs *flag.FlagSet, e *env) apiAction {
	spiffeID := fs.String("spiffeID", "", "SPIFFE ID to put in the JWT-SVID")
	ttl := fs.Duration("ttl", 0, "Lifetime of the JWT-SVID; 0 uses the server's default")
	var audience stringsFlag
	fs.Var(&audience, "audience", "Audience of the JWT-SVID; repeat for more")
	write := fs.String("write", "", "File where the token is written instead of printing it")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *spiffeID == "" {
			return errors.New("spiffeID must be specified")
		}
		if len(audience) == 0 {
			return errors.New("at least one audience must be specified")
		}
		id, err := spiffeid.FromString(*spiffeID)
		if err != nil {
			return err
		}
		seconds, err := ttlSeconds(*ttl)
		if err != nil {
			return fmt.Errorf("invalid value for TTL: %w", err)
		}
		resp, err := c.svid().MintJWTSVID(ctx, &svidv1.MintJWTSVIDRequest{
			Id:       &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()},
			Ttl:      seconds,
			Audience: audience,
		})
		if err != nil {
			return fmt.Errorf("unable to mint SVID: %w", err)
		}
		token := resp.GetSvid().GetToken()
		if token == "" {
			return errors.New("server response missing token")
		}
		if expiry, err := tokenExpiry(token); err != nil {
			_ = e.errorf("Unable to determine JWT-SVID lifetime: %v\n", err)
		} else if expiry.Sub(e.clock()) < *ttl {
			_ = e.errorf("JWT-SVID lifetime was capped shorter than specified ttl; expires %q\n", expiry.UTC().Format(time.RFC3339))
		}
		if *write != "" {
			if err := writeFile(*write, []byte(token), 0o600); err != nil {
				return fmt.Errorf("unable to write token: %w", err)
			}
			return e.printf("JWT-SVID written to %s\n", *write)
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		return e.printf("%s\n", token)
	}
}

// tokenExpiry reads the exp claim of a JWT without verifying it.
func tokenExpiry(token string) (time.Time, error) {
	t, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512,
		jose.ES256, jose.ES384, jose.ES512,
		jose.PS256, jose.PS384, jose.PS512,
	})
	if err != nil {
		return time.Time{}, err
	}
	var claims jwt.Claims
	if err := t.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return time.Time{}, err
	}
	if claims.Expiry == nil {
		return time.Time{}, errors.New("no expiry claim")
	}
	return claims.Expiry.Time(), nil
}
