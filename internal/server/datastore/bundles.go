package datastore

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
)

// bundleData is the JSON encoding of a bundle's authorities in bundles.data.
type bundleData struct {
	X509 []x509Data `json:"x509"`
	JWT  []jwtData  `json:"jwt"`
}

type x509Data struct {
	DER     []byte `json:"der"`
	Tainted bool   `json:"tainted,omitempty"`
}

type jwtData struct {
	KeyID     string `json:"kid"`
	PublicKey []byte `json:"pub"`
	ExpiresAt int64  `json:"exp"`
	Tainted   bool   `json:"tainted,omitempty"`
}

// CreateBundle stores a new bundle, keeping its SequenceNumber. It fails with
// ErrAlreadyExists when the trust domain has one.
func (s *Store) CreateBundle(ctx context.Context, b *Bundle) (*Bundle, error) {
	if err := validateBundle(b); err != nil {
		return nil, err
	}
	var out *Bundle
	err := s.write(ctx, func(t *txn) error {
		var err error
		out, err = t.createBundle(ctx, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FetchBundle returns the bundle of a trust domain ID ("spiffe://td"), or
// ErrNotFound.
func (s *Store) FetchBundle(ctx context.Context, td string) (*Bundle, error) {
	var out *Bundle
	err := s.read(ctx, func(t *txn) error {
		var err error
		_, out, err = t.bundleByTD(ctx, td)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListBundles returns bundles in creation order, a page at a time when p has
// a page size; the token is "" after the last page.
func (s *Store) ListBundles(ctx context.Context, p *Pagination) ([]*Bundle, string, error) {
	q := "SELECT id, trust_domain, data, refresh_hint, sequence_number FROM bundles"
	var args []any
	if p != nil {
		after, err := parseToken(p.Token)
		if err != nil {
			return nil, "", err
		}
		if after > 0 {
			q += " WHERE id > ?"
			args = append(args, after)
		}
	}
	q += " ORDER BY id"
	if limit := pageLimit(p); limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	var out []*Bundle
	var rowIDs []int64
	err := s.read(ctx, func(t *txn) error {
		var err error
		out, rowIDs, err = t.queryBundles(ctx, q, args...)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	keep, token := pageCut(p, rowIDs)
	return out[:keep], token, nil
}

// CountBundles returns the number of bundles.
func (s *Store) CountBundles(ctx context.Context) (int32, error) {
	var n int32
	err := s.read(ctx, func(t *txn) error {
		if err := t.queryRow(ctx, "SELECT COUNT(*) FROM bundles").Scan(&n); err != nil {
			return internalError("count bundles", err)
		}
		return nil
	})
	return n, err
}

// UpdateBundle replaces the content (authorities and refresh hint) of an
// existing bundle, or fails with ErrNotFound. When the content changes,
// SequenceNumber becomes the larger of the stored one + 1 and b's.
func (s *Store) UpdateBundle(ctx context.Context, b *Bundle) (*Bundle, error) {
	if err := validateBundle(b); err != nil {
		return nil, err
	}
	var out *Bundle
	err := s.write(ctx, func(t *txn) error {
		rowID, cur, err := t.bundleByTD(ctx, b.TrustDomain)
		if err != nil {
			return err
		}
		out, err = t.writeBundle(ctx, rowID, cur, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetBundle creates the bundle, or replaces an existing one's content as
// UpdateBundle does.
func (s *Store) SetBundle(ctx context.Context, b *Bundle) (*Bundle, error) {
	if err := validateBundle(b); err != nil {
		return nil, err
	}
	var out *Bundle
	err := s.write(ctx, func(t *txn) error {
		var err error
		out, err = t.setBundle(ctx, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (t *txn) setBundle(ctx context.Context, b *Bundle) (*Bundle, error) {
	rowID, cur, err := t.bundleByTD(ctx, b.TrustDomain)
	switch {
	case isNotFound(err):
		return t.createBundle(ctx, b)
	case err != nil:
		return nil, err
	}
	return t.writeBundle(ctx, rowID, cur, b)
}

// AppendBundle creates the bundle, or adds to the existing one the X.509
// authorities (compared by DER) and JWT authorities (compared by key ID) it
// does not have yet, bumping SequenceNumber when anything was added. The
// refresh hint of an existing bundle is kept.
func (s *Store) AppendBundle(ctx context.Context, b *Bundle) (*Bundle, error) {
	if err := validateBundle(b); err != nil {
		return nil, err
	}
	var out *Bundle
	err := s.write(ctx, func(t *txn) error {
		rowID, cur, err := t.bundleByTD(ctx, b.TrustDomain)
		switch {
		case isNotFound(err):
			out, err = t.createBundle(ctx, b)
			return err
		case err != nil:
			return err
		}
		merged := cloneBundle(cur)
		for _, a := range b.X509Authorities {
			if !slices.ContainsFunc(merged.X509Authorities, func(o X509Authority) bool { return bytes.Equal(o.Certificate, a.Certificate) }) {
				merged.X509Authorities = append(merged.X509Authorities, cloneX509(a))
			}
		}
		for _, a := range b.JWTAuthorities {
			if !slices.ContainsFunc(merged.JWTAuthorities, func(o JWTAuthority) bool { return o.KeyID == a.KeyID }) {
				merged.JWTAuthorities = append(merged.JWTAuthorities, cloneJWT(a))
			}
		}
		out, err = t.writeBundle(ctx, rowID, cur, merged)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateBundleFunc reads the bundle of td, calls fn with a copy in the same
// transaction and stores what fn left in it (read-modify-write, serialized
// with every other writer). fn's error aborts the update and is returned
// unchanged. The trust domain cannot be changed. SequenceNumber is bumped as
// UpdateBundle does. It fails with ErrNotFound when there is no bundle.
func (s *Store) UpdateBundleFunc(ctx context.Context, td string, fn func(*Bundle) error) (*Bundle, error) {
	var out *Bundle
	err := s.write(ctx, func(t *txn) error {
		rowID, cur, err := t.bundleByTD(ctx, td)
		if err != nil {
			return err
		}
		n := cloneBundle(cur)
		if err := fn(n); err != nil {
			return err
		}
		n.TrustDomain = cur.TrustDomain
		out, err = t.writeBundle(ctx, rowID, cur, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteBundle deletes the bundle of td. Entries federating with it are
// handled by mode: BundleDeleteRestrict refuses with a *BundleInUseError,
// BundleDeleteDelete deletes them, BundleDeleteDissociate removes td from
// their FederatesWith (bumping their revision). It fails with ErrNotFound
// when there is no bundle.
func (s *Store) DeleteBundle(ctx context.Context, td string, mode BundleDeleteMode) error {
	switch mode {
	case BundleDeleteRestrict, BundleDeleteDelete, BundleDeleteDissociate:
	default:
		return newError(ErrInvalidArgument, "unknown bundle delete mode %d", mode)
	}
	return s.write(ctx, func(t *txn) error {
		rowID, _, err := t.bundleByTD(ctx, td)
		if err != nil {
			return err
		}
		entries, entryRows, err := t.queryEntries(ctx, "SELECT "+entryColumns+
			" FROM entries e JOIN entry_federates_with f ON f.entry_id = e.id WHERE f.bundle_id = ? ORDER BY e.id", rowID)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			switch mode {
			case BundleDeleteRestrict:
				return &BundleInUseError{TrustDomain: td, Entries: len(entries)}
			case BundleDeleteDelete:
				for i, e := range entries {
					if err := t.deleteEntryRow(ctx, entryRows[i], e.ID); err != nil {
						return err
					}
				}
			case BundleDeleteDissociate:
				for i, e := range entries {
					n := cloneEntry(e)
					n.FederatesWith = slices.DeleteFunc(n.FederatesWith, func(s string) bool { return s == td })
					n.RevisionNumber = e.RevisionNumber + 1
					if err := t.updateEntryRow(ctx, entryRows[i], e, n); err != nil {
						return err
					}
				}
			}
		}
		if _, err := t.exec(ctx, "DELETE FROM bundles WHERE id = ?", rowID); err != nil {
			return internalError("delete bundle", err)
		}
		return t.appendChange(ctx, ChangeBundle, td, OpDelete)
	})
}

func (t *txn) createBundle(ctx context.Context, b *Bundle) (*Bundle, error) {
	n := cloneBundle(b)
	if _, err := t.exec(ctx, `INSERT INTO bundles (trust_domain, data, refresh_hint, sequence_number, created_at, updated_at)
	VALUES (?, ?, ?, ?, ?, ?)`, n.TrustDomain, encodeBundle(n), n.RefreshHint, n.SequenceNumber, t.now, t.now); err != nil {
		if t.d.isUniqueViolation(err) {
			return nil, newError(ErrAlreadyExists, "bundle %q already exists", n.TrustDomain)
		}
		return nil, internalError("create bundle", err)
	}
	if err := t.appendChange(ctx, ChangeBundle, n.TrustDomain, OpCreate); err != nil {
		return nil, err
	}
	return n, nil
}

// writeBundle stores n's content over cur (row rowID) when it differs, with
// the sequence number rule of UpdateBundle, and returns what is stored.
func (t *txn) writeBundle(ctx context.Context, rowID int64, cur, n *Bundle) (*Bundle, error) {
	out := cloneBundle(n)
	out.TrustDomain = cur.TrustDomain
	switch {
	case !bundleContentEqual(cur, out):
		out.SequenceNumber = max(cur.SequenceNumber+1, n.SequenceNumber)
	case n.SequenceNumber > cur.SequenceNumber:
		out.SequenceNumber = n.SequenceNumber
	default:
		return cloneBundle(cur), nil
	}
	if _, err := t.exec(ctx, "UPDATE bundles SET data = ?, refresh_hint = ?, sequence_number = ?, updated_at = ? WHERE id = ?",
		encodeBundle(out), out.RefreshHint, out.SequenceNumber, t.now, rowID); err != nil {
		return nil, internalError("update bundle", err)
	}
	if err := t.appendChange(ctx, ChangeBundle, out.TrustDomain, OpUpdate); err != nil {
		return nil, err
	}
	return out, nil
}

// bundleByTD loads a bundle and its row id, or fails with ErrNotFound.
func (t *txn) bundleByTD(ctx context.Context, td string) (int64, *Bundle, error) {
	bundles, rowIDs, err := t.queryBundles(ctx,
		"SELECT id, trust_domain, data, refresh_hint, sequence_number FROM bundles WHERE trust_domain = ?", td)
	if err != nil {
		return 0, nil, err
	}
	if len(bundles) == 0 {
		return 0, nil, newError(ErrNotFound, "bundle %q not found", td)
	}
	return rowIDs[0], bundles[0], nil
}

func (t *txn) queryBundles(ctx context.Context, q string, args ...any) ([]*Bundle, []int64, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, nil, internalError("query bundles", err)
	}
	defer rows.Close()
	var out []*Bundle
	var rowIDs []int64
	for rows.Next() {
		var (
			rowID int64
			b     Bundle
			data  []byte
		)
		if err := rows.Scan(&rowID, &b.TrustDomain, &data, &b.RefreshHint, &b.SequenceNumber); err != nil {
			return nil, nil, internalError("scan bundle", err)
		}
		if err := decodeBundle(data, &b); err != nil {
			return nil, nil, internalError("decode bundle", err)
		}
		out = append(out, &b)
		rowIDs = append(rowIDs, rowID)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, internalError("query bundles", err)
	}
	return out, rowIDs, nil
}

func validateBundle(b *Bundle) error {
	if b == nil {
		return newError(ErrInvalidArgument, "missing bundle")
	}
	if b.TrustDomain == "" {
		return newError(ErrInvalidArgument, "bundle is missing its trust domain")
	}
	return nil
}

func encodeBundle(b *Bundle) []byte {
	d := bundleData{X509: []x509Data{}, JWT: []jwtData{}}
	for _, a := range b.X509Authorities {
		d.X509 = append(d.X509, x509Data{DER: a.Certificate, Tainted: a.Tainted})
	}
	for _, a := range b.JWTAuthorities {
		d.JWT = append(d.JWT, jwtData{KeyID: a.KeyID, PublicKey: a.PublicKey, ExpiresAt: a.ExpiresAt, Tainted: a.Tainted})
	}
	out, err := json.Marshal(d)
	if err != nil {
		panic(err) // plain data, cannot fail
	}
	return out
}

func decodeBundle(data []byte, b *Bundle) error {
	var d bundleData
	if err := json.Unmarshal(data, &d); err != nil {
		return err
	}
	for _, a := range d.X509 {
		b.X509Authorities = append(b.X509Authorities, X509Authority{Certificate: a.DER, Tainted: a.Tainted})
	}
	for _, a := range d.JWT {
		b.JWTAuthorities = append(b.JWTAuthorities, JWTAuthority{KeyID: a.KeyID, PublicKey: a.PublicKey, ExpiresAt: a.ExpiresAt, Tainted: a.Tainted})
	}
	return nil
}

func bundleContentEqual(a, b *Bundle) bool {
	return a.RefreshHint == b.RefreshHint &&
		slices.EqualFunc(a.X509Authorities, b.X509Authorities, func(x, y X509Authority) bool {
			return x.Tainted == y.Tainted && bytes.Equal(x.Certificate, y.Certificate)
		}) &&
		slices.EqualFunc(a.JWTAuthorities, b.JWTAuthorities, func(x, y JWTAuthority) bool {
			return x.KeyID == y.KeyID && x.ExpiresAt == y.ExpiresAt && x.Tainted == y.Tainted && bytes.Equal(x.PublicKey, y.PublicKey)
		})
}

func cloneBundle(b *Bundle) *Bundle {
	c := *b
	c.X509Authorities = nil
	c.JWTAuthorities = nil
	for _, a := range b.X509Authorities {
		c.X509Authorities = append(c.X509Authorities, cloneX509(a))
	}
	for _, a := range b.JWTAuthorities {
		c.JWTAuthorities = append(c.JWTAuthorities, cloneJWT(a))
	}
	return &c
}

func cloneX509(a X509Authority) X509Authority {
	a.Certificate = bytes.Clone(a.Certificate)
	return a
}

func cloneJWT(a JWTAuthority) JWTAuthority {
	a.PublicKey = bytes.Clone(a.PublicKey)
	return a
}
