package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

const (
	formatPEM    = "pem"
	formatSPIFFE = "spiffe"
)

func bundleCommands() []command {
	return []command{
		{name: "bundle show", synopsis: "Prints the server's own trust bundle", setup: apiSetup(bundleShowFlags)},
		{name: "bundle list", synopsis: "Prints federated trust bundles", setup: apiSetup(bundleListFlags)},
		{name: "bundle set", synopsis: "Creates or replaces a federated trust bundle", setup: apiSetup(bundleSetFlags)},
		{name: "bundle delete", synopsis: "Removes a federated trust bundle", setup: apiSetup(bundleDeleteFlags)},
		{name: "bundle count", synopsis: "Counts the trust bundles the server holds", setup: apiSetup(bundleCountFlags)},
	}
}

func bundleShowFlags(fs *flag.FlagSet, e *env) apiAction {
	format := fs.String("format", formatPEM, `Bundle format for pretty output: "pem" or "spiffe"`)
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		b, err := c.bundle().GetBundle(ctx, &bundlev1.GetBundleRequest{})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, b)
		}
		return printBundle(e.stdout, b, *format, false)
	}
}

func bundleListFlags(fs *flag.FlagSet, e *env) apiAction {
	id := fs.String("id", "", "Trust domain (SPIFFE ID) of the only bundle to print")
	format := fs.String("format", formatPEM, `Bundle format for pretty output: "pem" or "spiffe"`)
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *id != "" {
			b, err := c.bundle().GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: *id})
			if err != nil {
				return err
			}
			if output.json {
				return printProto(e.stdout, b)
			}
			return printBundle(e.stdout, b, *format, false)
		}
		resp, err := c.bundle().ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		for i, b := range resp.Bundles {
			if i > 0 {
				if err := e.printf("\n"); err != nil {
					return err
				}
			}
			if err := printBundle(e.stdout, b, *format, true); err != nil {
				return err
			}
		}
		return nil
	}
}

func bundleSetFlags(fs *flag.FlagSet, e *env) apiAction {
	id := fs.String("id", "", "Trust domain (SPIFFE ID) the bundle belongs to")
	path := fs.String("path", "", "File holding the bundle; standard input when not given")
	format := fs.String("format", formatPEM, `Format of the bundle file: "pem" or "spiffe"`)
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *id == "" {
			return errors.New("id flag is required")
		}
		f, err := bundleFormat(*format)
		if err != nil {
			return err
		}
		var data []byte
		if *path == "" {
			data, err = io.ReadAll(e.stdin)
		} else {
			data, err = os.ReadFile(*path)
		}
		if err != nil {
			return fmt.Errorf("unable to load bundle data: %w", err)
		}
		b, err := parseBundle(data, f, *id)
		if err != nil {
			return err
		}
		resp, err := c.bundle().BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{b}})
		if err != nil {
			return fmt.Errorf("failed to set federated bundle: %w", err)
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		if len(resp.Results) == 0 {
			return errors.New("failed to set federated bundle: empty response")
		}
		if st := resp.Results[0].GetStatus(); st.GetCode() != int32(codes.OK) {
			return fmt.Errorf("failed to set federated bundle: %s", st.GetMessage())
		}
		return e.printf("bundle set.\n")
	}
}

func bundleDeleteFlags(fs *flag.FlagSet, e *env) apiAction {
	id := fs.String("id", "", "Trust domain (SPIFFE ID) of the bundle to remove")
	mode := fs.String("mode", "restrict", "What to do with entries federated with it: restrict (refuse), delete (them too) or dissociate (unlink)")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *id == "" {
			return errors.New("id is required")
		}
		var m bundlev1.BatchDeleteFederatedBundleRequest_Mode
		switch *mode {
		case "", "restrict":
			m = bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT
		case "dissociate":
			m = bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE
		case "delete":
			m = bundlev1.BatchDeleteFederatedBundleRequest_DELETE
		default:
			return fmt.Errorf("unsupported mode %q", *mode)
		}
		resp, err := c.bundle().BatchDeleteFederatedBundle(ctx, &bundlev1.BatchDeleteFederatedBundleRequest{
			Mode:         m,
			TrustDomains: []string{*id},
		})
		if err != nil {
			return fmt.Errorf("failed to delete federated bundle: %w", err)
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		if len(resp.Results) == 0 {
			return errors.New("failed to delete federated bundle: empty response")
		}
		r := resp.Results[0]
		if r.GetStatus().GetCode() != int32(codes.OK) {
			return fmt.Errorf("failed to delete federated bundle %q: %s", r.TrustDomain, r.GetStatus().GetMessage())
		}
		return e.printf("bundle deleted.\n")
	}
}

func bundleCountFlags(fs *flag.FlagSet, e *env) apiAction {
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		resp, err := c.bundle().CountBundles(ctx, &bundlev1.CountBundlesRequest{})
		if err != nil {
			return err
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		return e.printf("%d %s\n", resp.Count, plural(int(resp.Count), "bundle", "bundles"))
	}
}

func bundleFormat(f string) (string, error) {
	if f == "" {
		return formatPEM, nil
	}
	switch f = strings.ToLower(f); f {
	case formatPEM, formatSPIFFE:
		return f, nil
	}
	return "", fmt.Errorf("invalid format: %q", f)
}

// printBundle writes a bundle's X.509 authorities as PEM, or the whole bundle
// as a SPIFFE bundle document indented by four spaces, optionally under a
// banner naming the trust domain.
func printBundle(w io.Writer, b *types.Bundle, format string, header bool) error {
	if b == nil {
		return errors.New("no bundle provided")
	}
	format, err := bundleFormat(format)
	if err != nil {
		return err
	}
	if header {
		stars := strings.Repeat("*", 40)
		if _, err := fmt.Fprintf(w, "%s\n* %s\n%s\n", stars, b.TrustDomain, stars); err != nil {
			return err
		}
	}
	if format == formatPEM {
		for _, a := range b.X509Authorities {
			certs, err := x509.ParseCertificates(a.Asn1)
			if err != nil {
				return fmt.Errorf("unable to parse certificates ASN.1 DER data: %w", err)
			}
			for _, cert := range certs {
				if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	doc, err := spiffeBundleDoc(b)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, doc, "", "    "); err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, out.String())
	return err
}

// spiffeBundleDoc renders b in the SPIFFE bundle format (a JWK set with
// spiffe_sequence and spiffe_refresh_hint), X.509 authorities first, then JWT
// authorities in the order the server sent them.
func spiffeBundleDoc(b *types.Bundle) ([]byte, error) {
	if _, err := spiffeid.TrustDomainFromString(b.TrustDomain); err != nil {
		return nil, err
	}
	var doc struct {
		Keys           []jose.JSONWebKey `json:"keys"`
		SequenceNumber *uint64           `json:"spiffe_sequence,omitempty"`
		RefreshHint    *int64            `json:"spiffe_refresh_hint,omitempty"`
	}
	for i, a := range b.X509Authorities {
		cert, err := x509.ParseCertificate(a.Asn1)
		if err != nil {
			return nil, fmt.Errorf("unable to parse root CA %d: %w", i, err)
		}
		doc.Keys = append(doc.Keys, jose.JSONWebKey{Key: cert.PublicKey, Certificates: []*x509.Certificate{cert}, Use: "x509-svid"})
	}
	for i, k := range b.JwtAuthorities {
		pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("unable to parse JWT signing key %d: %w", i, err)
		}
		doc.Keys = append(doc.Keys, jose.JSONWebKey{Key: pub, KeyID: k.KeyId, Use: "jwt-svid"})
	}
	if b.RefreshHint > 0 {
		// Whole seconds, as a time.Duration rounded up (SPIFFE bundle rule).
		hint := int64((time.Duration(b.RefreshHint)*time.Second + time.Second - 1) / time.Second)
		doc.RefreshHint = &hint
	}
	if b.SequenceNumber > 0 {
		doc.SequenceNumber = &b.SequenceNumber
	}
	return json.Marshal(doc)
}

// parseBundle reads bundle data for trust domain id: PEM certificates, or a
// SPIFFE bundle document.
func parseBundle(data []byte, format, id string) (*types.Bundle, error) {
	if format == formatPEM {
		certs, err := parsePEMCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("unable to parse bundle data: %w", err)
		}
		b := &types.Bundle{TrustDomain: id}
		for _, c := range certs {
			b.X509Authorities = append(b.X509Authorities, &types.X509Certificate{Asn1: c.Raw})
		}
		return b, nil
	}
	td, err := spiffeid.TrustDomainFromString(id)
	if err != nil {
		return nil, err
	}
	sb, err := spiffebundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("unable to parse to spiffe bundle: %w", err)
	}
	b := &types.Bundle{TrustDomain: td.Name()}
	for _, c := range sb.X509Authorities() {
		b.X509Authorities = append(b.X509Authorities, &types.X509Certificate{Asn1: c.Raw})
	}
	for kid, key := range sb.JWTAuthorities() {
		pkix, err := x509.MarshalPKIXPublicKey(key)
		if err != nil {
			return nil, fmt.Errorf("unable to parse to type bundle: %w", err)
		}
		b.JwtAuthorities = append(b.JwtAuthorities, &types.JWTKey{PublicKey: pkix, KeyId: kid})
	}
	if r, ok := sb.RefreshHint(); ok {
		b.RefreshHint = int64(r.Seconds())
	}
	if s, ok := sb.SequenceNumber(); ok {
		b.SequenceNumber = s
	}
	return b, nil
}

// parsePEMCertificates returns every CERTIFICATE block of data, with SPIRE's
// errors for data without PEM blocks or with other block types.
func parsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("expected block type %q; got %q", "CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("unable to parse %q PEM block %d: %w", block.Type, n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM blocks")
	}
	return certs, nil
}
