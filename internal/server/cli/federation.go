package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	profileHTTPSWeb    = "https_web"
	profileHTTPSSPIFFE = "https_spiffe"
)

func federationCommands() []command {
	return []command{
		{name: "federation create", synopsis: "Adds federation relationships with other trust domains", setup: apiSetup(federationWriteFlags(false))},
		{name: "federation update", synopsis: "Replaces federation relationships with other trust domains", setup: apiSetup(federationWriteFlags(true))},
		{name: "federation list", synopsis: "Lists the federation relationships", setup: apiSetup(federationListFlags)},
		{name: "federation show", synopsis: "Prints one federation relationship", setup: apiSetup(federationShowFlags)},
		{name: "federation delete", synopsis: "Removes a federation relationship", setup: apiSetup(federationDeleteFlags)},
		{name: "federation refresh", synopsis: "Fetches a federated trust domain's bundle from its endpoint now", setup: apiSetup(federationRefreshFlags)},
	}
}

// relationshipConfig is one relationship as flags or as an item of the -data
// file ({"federationRelationships": [...]}).
type relationshipConfig struct {
	TrustDomain             string          `json:"trustDomain,omitempty"`
	BundleEndpointURL       string          `json:"bundleEndpointURL,omitempty"`
	BundleEndpointProfile   string          `json:"bundleEndpointProfile,omitempty"`
	EndpointSPIFFEID        string          `json:"endpointSPIFFEID,omitempty"`
	TrustDomainBundle       json.RawMessage `json:"trustDomainBundle,omitempty"`
	TrustDomainBundleFormat string          `json:"trustDomainBundleFormat,omitempty"`
	TrustDomainBundlePath   string          `json:"-"`
}

func (c *relationshipConfig) empty() bool {
	return c.BundleEndpointProfile == "" && c.BundleEndpointURL == "" && c.TrustDomainBundleFormat == formatPEM &&
		c.TrustDomainBundlePath == "" && c.EndpointSPIFFEID == "" && c.TrustDomain == ""
}

func (c *relationshipConfig) proto() (*types.FederationRelationship, error) {
	if c.TrustDomain == "" {
		return nil, errors.New("trust domain is required")
	}
	if c.BundleEndpointURL == "" {
		return nil, errors.New("bundle endpoint URL is required")
	}
	fr := &types.FederationRelationship{TrustDomain: c.TrustDomain, BundleEndpointUrl: c.BundleEndpointURL}
	bundleTD := c.TrustDomain
	switch c.BundleEndpointProfile {
	case profileHTTPSWeb:
		fr.BundleEndpointProfile = &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
	case profileHTTPSSPIFFE:
		if c.EndpointSPIFFEID == "" {
			return nil, errors.New("endpoint SPIFFE ID is required if 'https_spiffe' endpoint profile is set")
		}
		id, err := spiffeid.FromString(c.EndpointSPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("cannot parse bundle endpoint SPIFFE ID: %w", err)
		}
		bundleTD = id.TrustDomain().Name()
		fr.BundleEndpointProfile = &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: c.EndpointSPIFFEID}}
	default:
		return nil, fmt.Errorf("unknown bundle endpoint profile type: %q", c.BundleEndpointProfile)
	}
	switch {
	case c.TrustDomainBundlePath != "":
		data, err := os.ReadFile(c.TrustDomainBundlePath)
		if err != nil {
			return nil, fmt.Errorf("cannot read bundle file: %w", err)
		}
		b, err := parseBundle(data, c.TrustDomainBundleFormat, bundleTD)
		if err != nil {
			return nil, fmt.Errorf("cannot parse bundle file: %w", err)
		}
		fr.TrustDomainBundle = b
	case c.TrustDomainBundle != nil:
		var data []byte
		switch c.TrustDomainBundleFormat {
		case formatPEM:
			var s string
			if err := json.Unmarshal(c.TrustDomainBundle, &s); err != nil {
				return nil, fmt.Errorf("cannot parse bundle raw message: failed to unmarshal json: %w", err)
			}
			data = []byte(s)
		case formatSPIFFE:
			data = c.TrustDomainBundle
		default:
			return nil, fmt.Errorf("cannot parse bundle raw message: bundle format %q is unsupported", c.TrustDomainBundleFormat)
		}
		b, err := parseBundle(data, c.TrustDomainBundleFormat, bundleTD)
		if err != nil {
			return nil, fmt.Errorf("cannot parse bundle raw message: %w", err)
		}
		fr.TrustDomainBundle = b
	}
	return fr, nil
}

func readRelationships(stdin io.Reader, path string) ([]*types.FederationRelationship, error) {
	data, err := readInput(stdin, path)
	if err != nil {
		return nil, err
	}
	var file struct {
		Relationships []*relationshipConfig `json:"federationRelationships"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("failed to parse JSON: %w", err)
	}
	out := []*types.FederationRelationship{}
	for i, c := range file.Relationships {
		fr, err := c.proto()
		if err != nil {
			return nil, fmt.Errorf("could not parse item %d: %w", i, err)
		}
		out = append(out, fr)
	}
	return out, nil
}

func printRelationship(w io.Writer, fr *types.FederationRelationship) {
	line := func(label, value string) { fmt.Fprintf(w, "%-26s: %s\n", label, value) }
	line("Trust domain", fr.GetTrustDomain())
	line("Bundle endpoint URL", fr.GetBundleEndpointUrl())
	switch p := fr.GetBundleEndpointProfile().(type) {
	case *types.FederationRelationship_HttpsWeb:
		line("Bundle endpoint profile", profileHTTPSWeb)
	case *types.FederationRelationship_HttpsSpiffe:
		line("Bundle endpoint profile", profileHTTPSSPIFFE)
		line("Endpoint SPIFFE ID", p.HttpsSpiffe.GetEndpointSpiffeId())
	}
}

// relationshipResult is the part of create and update results the printer needs.
type relationshipResult interface {
	GetStatus() *types.Status
	GetFederationRelationship() *types.FederationRelationship
}

func federationWriteFlags(update bool) func(fs *flag.FlagSet, e *env) apiAction {
	return func(fs *flag.FlagSet, e *env) apiAction {
		data := fs.String("data", "", "JSON file of relationships to send instead of the relationship flags; - reads standard input")
		cfg := &relationshipConfig{}
		fs.StringVar(&cfg.TrustDomain, "trustDomain", "", "Name of the federated trust domain, like example.org")
		fs.StringVar(&cfg.BundleEndpointURL, "bundleEndpointURL", "", "HTTPS URL of the trust domain's bundle endpoint")
		fs.StringVar(&cfg.BundleEndpointProfile, "bundleEndpointProfile", "", `How the endpoint is authenticated: "https_web" or "https_spiffe"`)
		fs.StringVar(&cfg.EndpointSPIFFEID, "endpointSpiffeID", "", "SPIFFE ID of the bundle endpoint server (https_spiffe only)")
		fs.StringVar(&cfg.TrustDomainBundlePath, "trustDomainBundlePath", "", "File with the trust domain's current bundle (optional)")
		fs.StringVar(&cfg.TrustDomainBundleFormat, "trustDomainBundleFormat", formatPEM, `Format of that bundle file: "pem" or "spiffe"`)
		output := addOutputFlag(fs)
		verb := "create"
		if update {
			verb = "update"
		}
		return func(ctx context.Context, c *client) error {
			var rels []*types.FederationRelationship
			var err error
			if *data != "" {
				if !cfg.empty() {
					return errors.New("cannot use other flags to specify relationship fields when 'data' flag is set")
				}
				rels, err = readRelationships(e.stdin, *data)
			} else {
				var fr *types.FederationRelationship
				fr, err = cfg.proto()
				rels = []*types.FederationRelationship{fr}
			}
			if err != nil {
				return err
			}
			var resp proto.Message
			var results []relationshipResult
			if update {
				r, err := c.trustDomain().BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{FederationRelationships: rels})
				if err != nil {
					return fmt.Errorf("request failed: %w", err)
				}
				resp = r
				for _, x := range r.Results {
					results = append(results, x)
				}
			} else {
				r, err := c.trustDomain().BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{FederationRelationships: rels})
				if err != nil {
					return fmt.Errorf("request failed: %w", err)
				}
				resp = r
				for _, x := range r.Results {
					results = append(results, x)
				}
			}
			if output.json {
				return printProto(e.stdout, resp)
			}
			if len(results) > len(rels) {
				return errors.New("internal error: more results than relationships sent")
			}
			failed := 0
			for _, r := range results {
				if r.GetStatus().GetCode() == int32(codes.OK) {
					_ = e.printf("\n")
					printRelationship(e.stdout, r.GetFederationRelationship())
				}
			}
			for i, r := range results {
				if code := r.GetStatus().GetCode(); code != int32(codes.OK) {
					failed++
					_ = e.printf("\n")
					_ = e.errorf("Failed to %s the following federation relationship (code: %s, msg: %q):\n", verb, codes.Code(code), r.GetStatus().GetMessage())
					printRelationship(e.stderr, rels[i])
				}
			}
			if failed > 0 {
				return fmt.Errorf("failed to %s one or more federation relationships", verb)
			}
			return nil
		}
	}
}

func federationListFlags(fs *flag.FlagSet, e *env) apiAction {
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		resp, err := c.trustDomain().ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{})
		if err != nil {
			return fmt.Errorf("error listing federation relationship: %w", err)
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		n := len(resp.FederationRelationships)
		_ = e.printf("Found %d %s\n", n, plural(n, "federation relationship", "federation relationships"))
		for _, fr := range resp.FederationRelationships {
			_ = e.printf("\n")
			printRelationship(e.stdout, fr)
		}
		return nil
	}
}

func federationShowFlags(fs *flag.FlagSet, e *env) apiAction {
	td := fs.String("trustDomain", "", "Name of the federated trust domain to print")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *td == "" {
			return errors.New("a trust domain name is required")
		}
		fr, err := c.trustDomain().GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: *td})
		if err != nil {
			return fmt.Errorf("error showing federation relationship: %w", err)
		}
		if output.json {
			return printProto(e.stdout, fr)
		}
		_ = e.printf("Found a federation relationship with trust domain %s:\n\n", *td)
		printRelationship(e.stdout, fr)
		return nil
	}
}

func federationDeleteFlags(fs *flag.FlagSet, e *env) apiAction {
	id := fs.String("id", "", "Name of the federated trust domain whose relationship is removed")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *id == "" {
			return errors.New("id is required")
		}
		resp, err := c.trustDomain().BatchDeleteFederationRelationship(ctx, &trustdomainv1.BatchDeleteFederationRelationshipRequest{TrustDomains: []string{*id}})
		if err != nil {
			return fmt.Errorf("failed to delete federation relationship: %w", err)
		}
		if output.json {
			return printProto(e.stdout, resp)
		}
		if len(resp.Results) == 0 {
			return errors.New("internal error: empty response")
		}
		r := resp.Results[0]
		if r.GetStatus().GetCode() != int32(codes.OK) {
			return fmt.Errorf("failed to delete federation relationship %q: %s", r.TrustDomain, r.GetStatus().GetMessage())
		}
		return e.printf("federation relationship deleted.\n")
	}
}

func federationRefreshFlags(fs *flag.FlagSet, e *env) apiAction {
	id := fs.String("id", "", "Name of the federated trust domain whose bundle is fetched")
	output := addOutputFlag(fs)
	return func(ctx context.Context, c *client) error {
		if *id == "" {
			return errors.New("id is required")
		}
		_, err := c.trustDomain().RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: *id})
		switch status.Code(err) {
		case codes.OK:
		case codes.NotFound:
			return fmt.Errorf("there is no federation relationship with trust domain %q", *id)
		default:
			return fmt.Errorf("failed to refresh bundle: %w", err)
		}
		if output.json {
			return printProto(e.stdout, &types.Status{Code: int32(codes.OK), Message: "OK"})
		}
		return e.printf("Bundle refreshed\n")
	}
}
