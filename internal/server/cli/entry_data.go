package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// entryFile is the -data format of `entry create` and `entry update`: SPIRE's
// registration entries in JSON, keys as SPIRE's common.RegistrationEntry has
// them (matched case-insensitively, unknown keys ignored).
type entryFile struct {
	Entries []struct {
		Selectors []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"selectors"`
		ParentID       string   `json:"parent_id"`
		SpiffeID       string   `json:"spiffe_id"`
		X509SvidTTL    int32    `json:"x509_svid_ttl"`
		FederatesWith  []string `json:"federates_with"`
		EntryID        string   `json:"entry_id"`
		Admin          bool     `json:"admin"`
		Downstream     bool     `json:"downstream"`
		EntryExpiry    int64    `json:"entryExpiry"`
		DNSNames       []string `json:"dns_names"`
		RevisionNumber int64    `json:"revision_number"`
		StoreSvid      bool     `json:"store_svid"`
		JwtSvidTTL     int32    `json:"jwt_svid_ttl"`
		Hint           string   `json:"hint"`
		CreatedAt      int64    `json:"created_at"`
	} `json:"entries"`
}

// readInput reads the file at path, or stdin when path is "-".
func readInput(stdin io.Reader, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(path)
}

// readEntryFile parses a -data file into API entries; IDs are validated here
// (nothing is sent when one is malformed) and federated trust domains are
// normalized to their names.
func readEntryFile(stdin io.Reader, path string) ([]*types.Entry, error) {
	data, err := readInput(stdin, path)
	if err != nil {
		return nil, err
	}
	var file entryFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, err
	}
	entries := make([]*types.Entry, 0, len(file.Entries))
	for _, in := range file.Entries {
		spiffeID, err := spiffeid.FromString(in.SpiffeID)
		if err != nil {
			return nil, fmt.Errorf("invalid SPIFFE ID: %w", err)
		}
		parentID, err := spiffeid.FromString(in.ParentID)
		if err != nil {
			return nil, fmt.Errorf("invalid parent ID: %w", err)
		}
		var federatesWith []string
		for _, s := range in.FederatesWith {
			td, err := spiffeid.TrustDomainFromString(s)
			if err != nil {
				return nil, fmt.Errorf("invalid federated trust domain: %w", err)
			}
			federatesWith = append(federatesWith, td.Name())
		}
		var selectors []*types.Selector
		for _, s := range in.Selectors {
			selectors = append(selectors, &types.Selector{Type: s.Type, Value: s.Value})
		}
		entries = append(entries, &types.Entry{
			Id:             in.EntryID,
			SpiffeId:       &types.SPIFFEID{TrustDomain: spiffeID.TrustDomain().Name(), Path: spiffeID.Path()},
			ParentId:       &types.SPIFFEID{TrustDomain: parentID.TrustDomain().Name(), Path: parentID.Path()},
			Selectors:      selectors,
			X509SvidTtl:    in.X509SvidTTL,
			FederatesWith:  federatesWith,
			Admin:          in.Admin,
			Downstream:     in.Downstream,
			ExpiresAt:      in.EntryExpiry,
			DnsNames:       slices.Clone(in.DNSNames),
			RevisionNumber: in.RevisionNumber,
			StoreSvid:      in.StoreSvid,
			JwtSvidTtl:     in.JwtSvidTTL,
			Hint:           in.Hint,
			CreatedAt:      in.CreatedAt,
		})
	}
	return entries, nil
}

// readDeleteFile parses the -file of `entry delete`: {"ids": [...]}.
func readDeleteFile(stdin io.Reader, path string) ([]string, error) {
	data, err := readInput(stdin, path)
	if err != nil {
		return nil, err
	}
	var file struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, err
	}
	return file.IDs, nil
}
