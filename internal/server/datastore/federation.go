package datastore

import (
	"context"
)

// Bundle endpoint profiles of a federation relationship.
const (
	BundleEndpointWeb    = "https_web"
	BundleEndpointSPIFFE = "https_spiffe"
)

const federationColumns = "f.id, f.trust_domain, f.bundle_endpoint_url, f.bundle_endpoint_profile, f.endpoint_spiffe_id"

// CreateFederationRelationship stores a relationship with a trust domain
// (named without scheme, "example.org"). When fr.TrustDomainBundle is set it
// is stored too (as SetBundle does). It fails with ErrAlreadyExists when a
// relationship with the trust domain exists.
func (s *Store) CreateFederationRelationship(ctx context.Context, fr *FederationRelationship) (*FederationRelationship, error) {
	if err := validateFederation(fr); err != nil {
		return nil, err
	}
	var out *FederationRelationship
	err := s.write(ctx, func(t *txn) error {
		if _, err := t.exec(ctx, `INSERT INTO federation_relationships (trust_domain, bundle_endpoint_url, bundle_endpoint_profile,
	endpoint_spiffe_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
			fr.TrustDomain, fr.BundleEndpointURL, fr.BundleEndpointProfile, fr.EndpointSPIFFEID, t.now, t.now); err != nil {
			if t.d.isUniqueViolation(err) {
				return newError(ErrAlreadyExists, "federation relationship with %q already exists", fr.TrustDomain)
			}
			return internalError("create federation relationship", err)
		}
		var err error
		out, err = t.storeRelationshipBundle(ctx, fr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FetchFederationRelationship returns the relationship with a trust domain
// name, with the trust domain's bundle when there is one, or ErrNotFound.
func (s *Store) FetchFederationRelationship(ctx context.Context, tdName string) (*FederationRelationship, error) {
	var out *FederationRelationship
	err := s.read(ctx, func(t *txn) error {
		frs, _, err := t.queryFederations(ctx, "SELECT "+federationColumns+" FROM federation_relationships f WHERE f.trust_domain = ?", tdName)
		if err != nil {
			return err
		}
		if len(frs) == 0 {
			return newError(ErrNotFound, "federation relationship with %q not found", tdName)
		}
		out = frs[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListFederationRelationships returns relationships in creation order, a
// page at a time when p has a page size; the token is "" after the last page.
func (s *Store) ListFederationRelationships(ctx context.Context, p *Pagination) ([]*FederationRelationship, string, error) {
	q := "SELECT " + federationColumns + " FROM federation_relationships f"
	var args []any
	if p != nil {
		after, err := parseToken(p.Token)
		if err != nil {
			return nil, "", err
		}
		if after > 0 {
			q += " WHERE f.id > ?"
			args = append(args, after)
		}
	}
	q += " ORDER BY f.id"
	if limit := pageLimit(p); limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	var out []*FederationRelationship
	var token string
	err := s.read(ctx, func(t *txn) error {
		frs, rowIDs, err := t.queryFederations(ctx, q, args...)
		if err != nil {
			return err
		}
		var keep int
		keep, token = pageCut(p, rowIDs)
		out = frs[:keep]
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, token, nil
}

// UpdateFederationRelationship replaces the endpoint fields of an existing
// relationship and, when fr.TrustDomainBundle is set, the trust domain's
// bundle. It fails with ErrNotFound when there is no relationship.
func (s *Store) UpdateFederationRelationship(ctx context.Context, fr *FederationRelationship) (*FederationRelationship, error) {
	if err := validateFederation(fr); err != nil {
		return nil, err
	}
	var out *FederationRelationship
	err := s.write(ctx, func(t *txn) error {
		res, err := t.exec(ctx, `UPDATE federation_relationships SET bundle_endpoint_url = ?, bundle_endpoint_profile = ?,
	endpoint_spiffe_id = ?, updated_at = ? WHERE trust_domain = ?`,
			fr.BundleEndpointURL, fr.BundleEndpointProfile, fr.EndpointSPIFFEID, t.now, fr.TrustDomain)
		if err != nil {
			return internalError("update federation relationship", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internalError("update federation relationship", err)
		} else if n == 0 {
			return newError(ErrNotFound, "federation relationship with %q not found", fr.TrustDomain)
		}
		out, err = t.storeRelationshipBundle(ctx, fr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteFederationRelationship deletes the relationship with a trust domain
// name (its bundle stays), or fails with ErrNotFound.
func (s *Store) DeleteFederationRelationship(ctx context.Context, tdName string) error {
	return s.write(ctx, func(t *txn) error {
		res, err := t.exec(ctx, "DELETE FROM federation_relationships WHERE trust_domain = ?", tdName)
		if err != nil {
			return internalError("delete federation relationship", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internalError("delete federation relationship", err)
		} else if n == 0 {
			return newError(ErrNotFound, "federation relationship with %q not found", tdName)
		}
		return nil
	})
}

// storeRelationshipBundle stores fr's bundle if it has one and returns fr as
// stored, with the trust domain's current bundle.
func (t *txn) storeRelationshipBundle(ctx context.Context, fr *FederationRelationship) (*FederationRelationship, error) {
	out := *fr
	out.TrustDomainBundle = nil
	if fr.TrustDomainBundle != nil {
		b := cloneBundle(fr.TrustDomainBundle)
		b.TrustDomain = "spiffe://" + fr.TrustDomain
		stored, err := t.setBundle(ctx, b)
		if err != nil {
			return nil, err
		}
		out.TrustDomainBundle = stored
		return &out, nil
	}
	_, b, err := t.bundleByTD(ctx, "spiffe://"+fr.TrustDomain)
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, err
	default:
		out.TrustDomainBundle = b
	}
	return &out, nil
}

func (t *txn) queryFederations(ctx context.Context, q string, args ...any) ([]*FederationRelationship, []int64, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, nil, internalError("query federation relationships", err)
	}
	var out []*FederationRelationship
	var rowIDs []int64
	for rows.Next() {
		var fr FederationRelationship
		var rowID int64
		if err := rows.Scan(&rowID, &fr.TrustDomain, &fr.BundleEndpointURL, &fr.BundleEndpointProfile, &fr.EndpointSPIFFEID); err != nil {
			rows.Close()
			return nil, nil, internalError("scan federation relationship", err)
		}
		out = append(out, &fr)
		rowIDs = append(rowIDs, rowID)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, nil, internalError("query federation relationships", err)
	}
	// Bundles are read after the rows are closed: one statement at a time
	// per connection.
	for _, fr := range out {
		_, b, err := t.bundleByTD(ctx, "spiffe://"+fr.TrustDomain)
		switch {
		case isNotFound(err):
		case err != nil:
			return nil, nil, err
		default:
			fr.TrustDomainBundle = b
		}
	}
	return out, rowIDs, nil
}

func validateFederation(fr *FederationRelationship) error {
	switch {
	case fr == nil:
		return newError(ErrInvalidArgument, "missing federation relationship")
	case fr.TrustDomain == "":
		return newError(ErrInvalidArgument, "federation relationship is missing its trust domain")
	case fr.BundleEndpointURL == "":
		return newError(ErrInvalidArgument, "bundle endpoint URL is required")
	}
	switch fr.BundleEndpointProfile {
	case BundleEndpointWeb:
	case BundleEndpointSPIFFE:
		if fr.EndpointSPIFFEID == "" {
			return newError(ErrInvalidArgument, "bundle endpoint SPIFFE ID is required")
		}
	default:
		return newError(ErrInvalidArgument, "unknown bundle endpoint profile type: %q", fr.BundleEndpointProfile)
	}
	return nil
}
