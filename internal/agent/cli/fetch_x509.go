package cli

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// x509SVID is one entry of an X509SVIDResponse, parsed.
type x509SVID struct {
	id        string
	hint      string
	chain     []*x509.Certificate
	keyDER    []byte // PKCS#8, as received
	bundle    []*x509.Certificate
	federated map[string][]*x509.Certificate // by trust domain label
}

type fetchX509Command struct {
	*apiCommand
	silent bool
	write  string
	output outputFlag
}

func newFetchX509Command(e *env) command {
	c := &fetchX509Command{}
	c.apiCommand = newAPICommand(e, "fetch x509", "Prints the X509-SVIDs the Workload API gives this process",
		func(fs *flag.FlagSet) func(context.Context, *workloadClient) error {
			fs.BoolVar(&c.silent, "silent", false, "Print nothing on stdout")
			fs.StringVar(&c.write, "write", "", "Directory to save the SVIDs, keys and bundles in (pretty output only)")
			fs.Var(&c.output, "output", "Output format, pretty or json; pretty when unset.")
			return c.fetch
		})
	return c
}

func (c *fetchX509Command) fetch(ctx context.Context, client *workloadClient) error {
	start := c.e.now()
	resp, err := fetchX509Response(ctx, client)
	elapsed := c.e.now().Sub(start)
	if err != nil {
		return err
	}
	if c.output.json {
		// As in SPIRE: the raw response, unverified; -silent and -write do not apply.
		return printJSON(c.e.stdout, resp)
	}
	svids, err := parseX509Response(resp)
	if err != nil {
		return err
	}
	for _, svid := range svids {
		if err := verifyX509SVID(svid, c.e.now()); err != nil {
			return err
		}
	}
	if !c.silent {
		printX509SVIDs(c.e.stdout, svids, elapsed, true)
	}
	if c.write != "" {
		return c.writeFiles(svids)
	}
	return nil
}

// fetchX509Response returns the first message of the FetchX509SVID stream.
func fetchX509Response(ctx context.Context, client *workloadClient) (*workload.X509SVIDResponse, error) {
	ctx, cancel := client.callContext(ctx)
	defer cancel()
	stream, err := client.api.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		return nil, err
	}
	return stream.Recv()
}

// parseX509Response parses every SVID of resp with its bundle and the
// federated bundles (labelled by the response's trust domain keys).
func parseX509Response(resp *workload.X509SVIDResponse) ([]*x509SVID, error) {
	if len(resp.GetSvids()) == 0 {
		return nil, errors.New("workload response contains no svids")
	}
	federated := make(map[string][]*x509.Certificate, len(resp.GetFederatedBundles()))
	for td, der := range resp.GetFederatedBundles() {
		certs, err := x509.ParseCertificates(der)
		if err != nil {
			return nil, fmt.Errorf("failed to parse bundle for federated domain %q: %w", td, err)
		}
		if len(certs) == 0 {
			return nil, fmt.Errorf("no certificates in bundle for federated domain %q", td)
		}
		federated[td] = certs
	}
	svids := make([]*x509SVID, 0, len(resp.GetSvids()))
	for i, s := range resp.GetSvids() {
		svid, err := parseX509SVID(s)
		if err != nil {
			return nil, fmt.Errorf("failed to parse svid entry %d for spiffe id %q: %w", i, s.GetSpiffeId(), err)
		}
		svid.federated = federated
		svids = append(svids, svid)
	}
	return svids, nil
}

func parseX509SVID(s *workload.X509SVID) (*x509SVID, error) {
	chain, err := x509.ParseCertificates(s.GetX509Svid())
	if err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, errors.New("no certificates found")
	}
	key, err := x509.ParsePKCS8PrivateKey(s.GetX509SvidKey())
	if err != nil {
		return nil, fmt.Errorf("failed to parse private key: %w", err)
	}
	if _, ok := key.(crypto.Signer); !ok {
		return nil, fmt.Errorf("private key is type %T, not crypto.Signer", key)
	}
	bundle, err := x509.ParseCertificates(s.GetBundle())
	if err != nil {
		return nil, fmt.Errorf("failed to parse trust bundle: %w", err)
	}
	if len(bundle) == 0 {
		return nil, errors.New("no certificates in trust bundle")
	}
	return &x509SVID{id: s.GetSpiffeId(), hint: s.GetHint(), chain: chain, keyDER: s.GetX509SvidKey(), bundle: bundle}, nil
}

// verifyX509SVID checks that the SVID chains to its own trust domain's bundle at now.
func verifyX509SVID(svid *x509SVID, now time.Time) error {
	id, err := spiffeid.FromString(svid.id)
	if err != nil {
		return err
	}
	bundle := x509bundle.FromX509Authorities(id.TrustDomain(), svid.bundle)
	if _, _, err := x509svid.Verify(svid.chain, bundle, x509svid.WithTime(now)); err != nil {
		return fmt.Errorf("%q SVID failed verification against bundle: %w", svid.id, err)
	}
	return nil
}

// printX509SVIDs prints the tab-aligned blocks of `api fetch x509` and
// `api watch`: a count line with the response time, then per SVID its ID,
// [hint,] validity of the leaf, intermediates, bundle CAs and federated CAs
// (federated trust domains in sorted order), and a final blank line.
func printX509SVIDs(w io.Writer, svids []*x509SVID, elapsed time.Duration, withHint bool) {
	plural := "s"
	if len(svids) == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "Received %d svid%s after %s\n", len(svids), plural, elapsed)
	for _, svid := range svids {
		fmt.Fprintf(w, "\nSPIFFE ID:\t\t%s\n", svid.id)
		if withHint && svid.hint != "" {
			fmt.Fprintf(w, "Hint:\t\t\t%s\n", svid.hint)
		}
		fmt.Fprintf(w, "SVID Valid After:\t%v\n", svid.chain[0].NotBefore)
		fmt.Fprintf(w, "SVID Valid Until:\t%v\n", svid.chain[0].NotAfter)
		for i, cert := range svid.chain[1:] {
			fmt.Fprintf(w, "Intermediate #%d Valid After:\t%v\n", i+1, cert.NotBefore)
			fmt.Fprintf(w, "Intermediate #%d Valid Until:\t%v\n", i+1, cert.NotAfter)
		}
		for i, cert := range svid.bundle {
			fmt.Fprintf(w, "CA #%d Valid After:\t%v\n", i+1, cert.NotBefore)
			fmt.Fprintf(w, "CA #%d Valid Until:\t%v\n", i+1, cert.NotAfter)
		}
		for _, td := range slices.Sorted(maps.Keys(svid.federated)) {
			for i, cert := range svid.federated[td] {
				fmt.Fprintf(w, "[%s] CA #%d Valid After:\t%v\n", td, i+1, cert.NotBefore)
				fmt.Fprintf(w, "[%s] CA #%d Valid Until:\t%v\n", td, i+1, cert.NotAfter)
			}
		}
	}
	fmt.Fprintln(w)
}

// writeFiles writes, per SVID N, svid.N.pem (chain), svid.N.key (PKCS#8,
// 0600), bundle.N.pem and federated_bundle.N.M.pem (federated trust domains
// in sorted order) into the existing -write directory, announcing each file
// on stdout before writing it.
func (c *fetchX509Command) writeFiles(svids []*x509SVID) error {
	for i, svid := range svids {
		svidPath := filepath.Join(c.write, fmt.Sprintf("svid.%d.pem", i))
		keyPath := filepath.Join(c.write, fmt.Sprintf("svid.%d.key", i))
		bundlePath := filepath.Join(c.write, fmt.Sprintf("bundle.%d.pem", i))

		c.e.printf("Writing SVID #%d to file %s.\n", i, svidPath)
		if err := writeFile(svidPath, certsPEM(svid.chain), 0o644); err != nil {
			return err
		}
		c.e.printf("Writing key #%d to file %s.\n", i, keyPath)
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: svid.keyDER})
		if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
			return err
		}
		c.e.printf("Writing bundle #%d to file %s.\n", i, bundlePath)
		if err := writeFile(bundlePath, certsPEM(svid.bundle), 0o644); err != nil {
			return err
		}
		for j, td := range slices.Sorted(maps.Keys(svid.federated)) {
			path := filepath.Join(c.write, fmt.Sprintf("federated_bundle.%d.%d.pem", i, j))
			c.e.printf("Writing federated bundle #%d for trust domain %s to file %s.\n", j, td, path)
			if err := writeFile(path, certsPEM(svid.federated[td]), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func certsPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, cert := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	return out
}

// writeFile creates or truncates path with data. New files get mode (less
// the umask); a private file (0600) is also narrowed to 0600 if it existed
// with a wider mode.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if mode == 0o600 {
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
