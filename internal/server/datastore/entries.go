package datastore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"slices"
	"strings"
)

const entryColumns = `e.id, e.entry_id, e.spiffe_id, e.parent_id, e.selectors, e.x509_svid_ttl, e.jwt_svid_ttl,
	e.dns_names, e.federates_with, e.admin, e.downstream, e.expires_at, e.store_svid, e.hint, e.created_at,
	e.revision_number`

// maxEntryIDLength is SPIRE's limit on entry IDs.
const maxEntryIDLength = 255

// inChunk bounds the number of values bound in one IN (...) list.
const inChunk = 500

// CreateEntry stores a new registration entry and returns it with its ID
// (a random UUID when e.ID is empty), CreatedAt and RevisionNumber 0.
// Selectors and FederatesWith are stored sorted and without duplicates.
// It fails with a *SimilarEntryError (wrapping ErrAlreadyExists) when an
// entry with the same SPIFFE ID, parent ID and selector set exists, with
// ErrAlreadyExists when the ID is taken, with a *MissingBundleError when a
// federated trust domain has no bundle, and with ErrInvalidArgument when the
// entry is malformed.
func (s *Store) CreateEntry(ctx context.Context, e *Entry) (*Entry, error) {
	var out *Entry
	err := s.write(ctx, func(t *txn) error {
		var err error
		out, err = t.createEntry(ctx, e)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateEntries creates many entries in one transaction. Each entry gets its
// own outcome: results[i] is the created entry or nil, errs[i] the refusal
// CreateEntry would have returned for it. The entries that succeed commit
// together. The third result is a database failure, in which case nothing
// was created.
//
// Extension: SPIRE creates batch entries one transaction each.
func (s *Store) CreateEntries(ctx context.Context, entries []*Entry) ([]*Entry, []error, error) {
	results := make([]*Entry, len(entries))
	errs := make([]error, len(entries))
	err := s.write(ctx, func(t *txn) error {
		clear(results)
		clear(errs)
		for i, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := t.savepoint(ctx, func() error {
				var err error
				results[i], err = t.createEntry(ctx, e)
				return err
			})
			switch {
			case err == nil:
			case isRefusal(err):
				results[i], errs[i] = nil, err
			default:
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return results, errs, nil
}

func (t *txn) createEntry(ctx context.Context, in *Entry) (*Entry, error) {
	if in == nil {
		return nil, newError(ErrInvalidArgument, "invalid request: missing registered entry")
	}
	e := cloneEntry(in)
	if e.ID == "" {
		e.ID = newUUID()
	}
	normalizeEntry(e)
	if err := validateEntry(e); err != nil {
		return nil, err
	}
	key := similarityKey(e)
	existing, err := t.findSimilar(ctx, key, e)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return nil, &SimilarEntryError{Existing: existing}
	}
	bundleIDs, err := t.bundleIDs(ctx, e.FederatesWith)
	if err != nil {
		return nil, err
	}
	e.CreatedAt = t.now
	e.RevisionNumber = 0

	sels, dns, feds := encodeEntryLists(e)
	rowID, err := t.d.insertID(ctx, t, `INSERT INTO entries (entry_id, spiffe_id, parent_id, similarity_key, selectors,
	x509_svid_ttl, jwt_svid_ttl, dns_names, federates_with, admin, downstream, expires_at, store_svid, hint, created_at,
	revision_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, "id",
		e.ID, e.SPIFFEID, e.ParentID, key, sels, e.X509SVIDTTL, e.JWTSVIDTTL, dns, feds, e.Admin, e.Downstream,
		e.ExpiresAt, e.StoreSVID, e.Hint, e.CreatedAt, e.RevisionNumber)
	if err != nil {
		if t.d.isUniqueViolation(err) {
			return nil, newError(ErrAlreadyExists, "entry %q already exists", e.ID)
		}
		return nil, internalError("create entry", err)
	}
	if err := t.insertEntrySelectors(ctx, rowID, e.Selectors); err != nil {
		return nil, err
	}
	if err := t.insertEntryFederates(ctx, rowID, e.FederatesWith, bundleIDs); err != nil {
		return nil, err
	}
	if err := t.appendChange(ctx, ChangeEntry, e.ID, OpCreate); err != nil {
		return nil, err
	}
	return e, nil
}

// FetchEntry returns the entry with the given ID, or ErrNotFound.
func (s *Store) FetchEntry(ctx context.Context, id string) (*Entry, error) {
	var out *Entry
	err := s.read(ctx, func(t *txn) error {
		var err error
		_, out, err = t.entryByID(ctx, id)
		return err
	})
	return out, err
}

// FetchEntries returns the entries with the given IDs, keyed by ID. IDs that
// do not exist are absent from the map.
func (s *Store) FetchEntries(ctx context.Context, ids []string) (map[string]*Entry, error) {
	out := make(map[string]*Entry, len(ids))
	ids = normalizeStrings(ids)
	err := s.read(ctx, func(t *txn) error {
		for chunk := range slices.Chunk(ids, inChunk) {
			args := make([]any, len(chunk))
			for i, id := range chunk {
				args[i] = id
			}
			entries, _, err := t.queryEntries(ctx, "SELECT "+entryColumns+" FROM entries e WHERE e.entry_id IN ("+
				placeholders(len(chunk))+")", args...)
			if err != nil {
				return err
			}
			for _, e := range entries {
				out[e.ID] = e
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListEntries returns the entries matching every filter of req, ordered by
// creation (internal row id), one page at a time when req.Pagination has a
// page size. The returned token (also stored in req.Pagination.Token) is ""
// after the last page. A malformed token fails with ErrInvalidArgument, a
// selector filter with no selectors too.
func (s *Store) ListEntries(ctx context.Context, req *ListEntriesRequest) ([]*Entry, string, error) {
	if req == nil {
		req = &ListEntriesRequest{}
	}
	conds, args, err := entryFilters(req)
	if err != nil {
		return nil, "", err
	}
	q, args, err := pageQuery("SELECT "+entryColumns+" FROM entries e", "e", conds, args, req.Pagination)
	if err != nil {
		return nil, "", err
	}
	var entries []*Entry
	var rowIDs []int64
	err = s.read(ctx, func(t *txn) error {
		var err error
		entries, rowIDs, err = t.queryEntries(ctx, q, args...)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	keep, token := pageCut(req.Pagination, rowIDs)
	return entries[:keep], token, nil
}

// CountEntries returns how many entries match the filters of req
// (pagination is ignored).
func (s *Store) CountEntries(ctx context.Context, req *ListEntriesRequest) (int32, error) {
	if req == nil {
		req = &ListEntriesRequest{}
	}
	conds, args, err := entryFilters(req)
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.read(ctx, func(t *txn) error {
		if err := t.queryRow(ctx, "SELECT COUNT(*) FROM entries e"+where(conds), args...).Scan(&n); err != nil {
			return internalError("count entries", err)
		}
		return nil
	})
	return int32(min(n, int64(^uint32(0)>>1))), err
}

// entryFilters turns the filters of req into SQL conditions on alias e.
func entryFilters(req *ListEntriesRequest) ([]string, []any, error) {
	var conds []string
	var args []any
	if req.BySPIFFEID != "" {
		conds = append(conds, "e.spiffe_id = ?")
		args = append(args, req.BySPIFFEID)
	}
	if req.ByParentID != "" {
		conds = append(conds, "e.parent_id = ?")
		args = append(args, req.ByParentID)
	}
	if req.ByHint != "" {
		conds = append(conds, "e.hint = ?")
		args = append(args, req.ByHint)
	}
	if req.ByDownstream != nil {
		conds = append(conds, "e.downstream = ?")
		args = append(args, *req.ByDownstream)
	}
	if req.BySelectors != nil {
		if len(req.BySelectors.Selectors) == 0 {
			return nil, nil, newError(ErrInvalidArgument, "cannot list by empty selector set")
		}
		c, a, err := selectorFilter("entry_selectors", "entry_id", req.BySelectors.Selectors).in("e.id", req.BySelectors.Match)
		if err != nil {
			return nil, nil, err
		}
		conds = append(conds, c)
		args = append(args, a...)
	}
	if req.ByFederatesWith != nil && len(req.ByFederatesWith.TrustDomains) > 0 {
		c, a, err := federatesFilter(req.ByFederatesWith.TrustDomains).in("e.id", req.ByFederatesWith.Match)
		if err != nil {
			return nil, nil, err
		}
		conds = append(conds, c)
		args = append(args, a...)
	}
	return conds, args, nil
}

// UpdateEntry replaces the fields of the stored entry e.ID that mask selects
// (all of them when mask is nil), bumps its RevisionNumber and returns the
// result. It fails with ErrNotFound when the entry does not exist, and like
// CreateEntry when the result is malformed or federates with a trust domain
// that has no bundle.
func (s *Store) UpdateEntry(ctx context.Context, e *Entry, mask *EntryMask) (*Entry, error) {
	if e == nil {
		return nil, newError(ErrInvalidArgument, "invalid request: missing registered entry")
	}
	var out *Entry
	err := s.write(ctx, func(t *txn) error {
		rowID, cur, err := t.entryByID(ctx, e.ID)
		if err != nil {
			return err
		}
		n := applyEntryMask(cur, e, mask)
		normalizeEntry(n)
		if err := validateEntry(n); err != nil {
			return err
		}
		n.RevisionNumber = cur.RevisionNumber + 1
		if err := t.updateEntryRow(ctx, rowID, cur, n); err != nil {
			return err
		}
		out = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// updateEntryRow writes n over the row of cur and records the change.
func (t *txn) updateEntryRow(ctx context.Context, rowID int64, cur, n *Entry) error {
	fedsChanged := !slices.Equal(cur.FederatesWith, n.FederatesWith)
	var bundleIDs map[string]int64
	if fedsChanged {
		var err error
		if bundleIDs, err = t.bundleIDs(ctx, n.FederatesWith); err != nil {
			return err
		}
	}
	sels, dns, feds := encodeEntryLists(n)
	if _, err := t.exec(ctx, `UPDATE entries SET spiffe_id = ?, parent_id = ?, similarity_key = ?, selectors = ?,
	x509_svid_ttl = ?, jwt_svid_ttl = ?, dns_names = ?, federates_with = ?, admin = ?, downstream = ?, expires_at = ?,
	store_svid = ?, hint = ?, revision_number = ? WHERE id = ?`,
		n.SPIFFEID, n.ParentID, similarityKey(n), sels, n.X509SVIDTTL, n.JWTSVIDTTL, dns, feds, n.Admin,
		n.Downstream, n.ExpiresAt, n.StoreSVID, n.Hint, n.RevisionNumber, rowID); err != nil {
		return internalError("update entry", err)
	}
	if !slices.Equal(cur.Selectors, n.Selectors) {
		if _, err := t.exec(ctx, "DELETE FROM entry_selectors WHERE entry_id = ?", rowID); err != nil {
			return internalError("update entry selectors", err)
		}
		if err := t.insertEntrySelectors(ctx, rowID, n.Selectors); err != nil {
			return err
		}
	}
	if fedsChanged {
		if _, err := t.exec(ctx, "DELETE FROM entry_federates_with WHERE entry_id = ?", rowID); err != nil {
			return internalError("update entry federation", err)
		}
		if err := t.insertEntryFederates(ctx, rowID, n.FederatesWith, bundleIDs); err != nil {
			return err
		}
	}
	return t.appendChange(ctx, ChangeEntry, n.ID, OpUpdate)
}

// DeleteEntry deletes the entry with the given ID and returns it, or fails
// with ErrNotFound.
func (s *Store) DeleteEntry(ctx context.Context, id string) (*Entry, error) {
	var out *Entry
	err := s.write(ctx, func(t *txn) error {
		rowID, e, err := t.entryByID(ctx, id)
		if err != nil {
			return err
		}
		if err := t.deleteEntryRow(ctx, rowID, e.ID); err != nil {
			return err
		}
		out = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (t *txn) deleteEntryRow(ctx context.Context, rowID int64, id string) error {
	if _, err := t.exec(ctx, "DELETE FROM entries WHERE id = ?", rowID); err != nil {
		return internalError("delete entry", err)
	}
	return t.appendChange(ctx, ChangeEntry, id, OpDelete)
}

// PruneEntries deletes the entries whose ExpiresAt is set and before the
// unix time expiresBefore.
func (s *Store) PruneEntries(ctx context.Context, expiresBefore int64) error {
	return s.write(ctx, func(t *txn) error {
		ids, err := t.queryStrings(ctx, "DELETE FROM entries WHERE expires_at <> 0 AND expires_at < ? RETURNING entry_id", expiresBefore)
		if err != nil {
			return internalError("prune entries", err)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if err := t.appendChange(ctx, ChangeEntry, id, OpDelete); err != nil {
				return err
			}
		}
		return nil
	})
}

// entryByID loads one entry and its row id, or fails with ErrNotFound.
func (t *txn) entryByID(ctx context.Context, id string) (int64, *Entry, error) {
	entries, rowIDs, err := t.queryEntries(ctx, "SELECT "+entryColumns+" FROM entries e WHERE e.entry_id = ?", id)
	if err != nil {
		return 0, nil, err
	}
	if len(entries) == 0 {
		return 0, nil, newError(ErrNotFound, "entry %q not found", id)
	}
	return rowIDs[0], entries[0], nil
}

// findSimilar returns the entry with e's SPIFFE ID, parent ID and selector
// set, or nil.
func (t *txn) findSimilar(ctx context.Context, key string, e *Entry) (*Entry, error) {
	entries, _, err := t.queryEntries(ctx, "SELECT "+entryColumns+" FROM entries e WHERE e.similarity_key = ?", key)
	if err != nil {
		return nil, err
	}
	for _, o := range entries {
		if o.SPIFFEID == e.SPIFFEID && o.ParentID == e.ParentID && slices.Equal(o.Selectors, e.Selectors) {
			return o, nil
		}
	}
	return nil, nil
}

// queryEntries runs a SELECT of entryColumns and returns the entries with
// their row ids.
func (t *txn) queryEntries(ctx context.Context, q string, args ...any) ([]*Entry, []int64, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, nil, internalError("query entries", err)
	}
	defer rows.Close()
	var entries []*Entry
	var rowIDs []int64
	for rows.Next() {
		rowID, e, err := scanEntry(rows)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
		rowIDs = append(rowIDs, rowID)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, internalError("query entries", err)
	}
	return entries, rowIDs, nil
}

func scanEntry(rows *sql.Rows) (int64, *Entry, error) {
	var (
		rowID          int64
		e              Entry
		sels, dns, fed sql.RawBytes
	)
	if err := rows.Scan(&rowID, &e.ID, &e.SPIFFEID, &e.ParentID, &sels, &e.X509SVIDTTL, &e.JWTSVIDTTL, &dns, &fed,
		&e.Admin, &e.Downstream, &e.ExpiresAt, &e.StoreSVID, &e.Hint, &e.CreatedAt, &e.RevisionNumber); err != nil {
		return 0, nil, internalError("scan entry", err)
	}
	var err error
	if e.Selectors, err = decodeSelectors(sels); err != nil {
		return 0, nil, internalError("decode entry selectors", err)
	}
	if e.DNSNames, err = decodeStrings(dns); err != nil {
		return 0, nil, internalError("decode entry DNS names", err)
	}
	if e.FederatesWith, err = decodeStrings(fed); err != nil {
		return 0, nil, internalError("decode entry federates with", err)
	}
	return rowID, &e, nil
}

// queryStrings runs a query returning one text column.
func (t *txn) queryStrings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t *txn) insertEntrySelectors(ctx context.Context, rowID int64, sels []Selector) error {
	for chunk := range slices.Chunk(sels, inChunk) {
		var q strings.Builder
		q.WriteString("INSERT INTO entry_selectors (entry_id, type, value) VALUES ")
		args := make([]any, 0, 3*len(chunk))
		for i, s := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?)")
			args = append(args, rowID, s.Type, s.Value)
		}
		if _, err := t.exec(ctx, q.String(), args...); err != nil {
			return internalError("insert entry selectors", err)
		}
	}
	return nil
}

func (t *txn) insertEntryFederates(ctx context.Context, rowID int64, tds []string, bundleIDs map[string]int64) error {
	for chunk := range slices.Chunk(tds, inChunk) {
		var q strings.Builder
		q.WriteString("INSERT INTO entry_federates_with (entry_id, bundle_id) VALUES ")
		args := make([]any, 0, 2*len(chunk))
		for i, td := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?)")
			args = append(args, rowID, bundleIDs[td])
		}
		if _, err := t.exec(ctx, q.String(), args...); err != nil {
			return internalError("insert entry federation", err)
		}
	}
	return nil
}

// bundleIDs resolves trust domain IDs to bundle row ids; a trust domain
// without a bundle fails with *MissingBundleError.
func (t *txn) bundleIDs(ctx context.Context, tds []string) (map[string]int64, error) {
	if len(tds) == 0 {
		return nil, nil
	}
	out := make(map[string]int64, len(tds))
	for chunk := range slices.Chunk(tds, inChunk) {
		args := make([]any, len(chunk))
		for i, td := range chunk {
			args[i] = td
		}
		rows, err := t.query(ctx, "SELECT id, trust_domain FROM bundles WHERE trust_domain IN ("+placeholders(len(chunk))+")", args...)
		if err != nil {
			return nil, internalError("find federated bundles", err)
		}
		for rows.Next() {
			var id int64
			var td string
			if err := rows.Scan(&id, &td); err != nil {
				rows.Close()
				return nil, internalError("find federated bundles", err)
			}
			out[td] = id
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, internalError("find federated bundles", err)
		}
	}
	for _, td := range tds {
		if _, ok := out[td]; !ok {
			return nil, &MissingBundleError{TrustDomain: td}
		}
	}
	return out, nil
}

// applyEntryMask returns cur with the fields of in that mask selects.
func applyEntryMask(cur, in *Entry, mask *EntryMask) *Entry {
	if mask == nil {
		mask = &EntryMask{SPIFFEID: true, ParentID: true, Selectors: true, X509SVIDTTL: true, JWTSVIDTTL: true,
			DNSNames: true, FederatesWith: true, Admin: true, Downstream: true, ExpiresAt: true, StoreSVID: true, Hint: true}
	}
	n := cloneEntry(cur)
	if mask.SPIFFEID {
		n.SPIFFEID = in.SPIFFEID
	}
	if mask.ParentID {
		n.ParentID = in.ParentID
	}
	if mask.Selectors {
		n.Selectors = slices.Clone(in.Selectors)
	}
	if mask.X509SVIDTTL {
		n.X509SVIDTTL = in.X509SVIDTTL
	}
	if mask.JWTSVIDTTL {
		n.JWTSVIDTTL = in.JWTSVIDTTL
	}
	if mask.DNSNames {
		n.DNSNames = slices.Clone(in.DNSNames)
	}
	if mask.FederatesWith {
		n.FederatesWith = slices.Clone(in.FederatesWith)
	}
	if mask.Admin {
		n.Admin = in.Admin
	}
	if mask.Downstream {
		n.Downstream = in.Downstream
	}
	if mask.ExpiresAt {
		n.ExpiresAt = in.ExpiresAt
	}
	if mask.StoreSVID {
		n.StoreSVID = in.StoreSVID
	}
	if mask.Hint {
		n.Hint = in.Hint
	}
	return n
}

func cloneEntry(e *Entry) *Entry {
	c := *e
	c.Selectors = slices.Clone(e.Selectors)
	c.DNSNames = slices.Clone(e.DNSNames)
	c.FederatesWith = slices.Clone(e.FederatesWith)
	return &c
}

// normalizeEntry sorts and deduplicates the sets of e.
func normalizeEntry(e *Entry) {
	e.Selectors = normalizeSelectors(e.Selectors)
	e.FederatesWith = normalizeStrings(e.FederatesWith)
	if e.DNSNames == nil {
		e.DNSNames = []string{}
	}
	if e.FederatesWith == nil {
		e.FederatesWith = []string{}
	}
}

// validateEntry applies SPIRE's datastore checks.
func validateEntry(e *Entry) error {
	if len(e.Selectors) == 0 {
		return newError(ErrInvalidArgument, "invalid registration entry: missing selector list")
	}
	if e.StoreSVID {
		for _, s := range e.Selectors {
			if s.Type != e.Selectors[0].Type {
				return newError(ErrInvalidArgument, "invalid registration entry: selector types must be the same when store SVID is enabled")
			}
		}
	}
	if len(e.ID) > maxEntryIDLength {
		return newError(ErrInvalidArgument, "invalid registration entry: entry ID too long")
	}
	for _, r := range e.ID {
		if !validEntryIDChar(r) {
			return newError(ErrInvalidArgument, "invalid registration entry: entry ID contains invalid characters")
		}
	}
	if e.SPIFFEID == "" {
		return newError(ErrInvalidArgument, "invalid registration entry: missing SPIFFE ID")
	}
	if e.X509SVIDTTL < 0 {
		return newError(ErrInvalidArgument, "invalid registration entry: X509SvidTtl is not set")
	}
	if e.JWTSVIDTTL < 0 {
		return newError(ErrInvalidArgument, "invalid registration entry: JwtSvidTtl is not set")
	}
	return nil
}

// validEntryIDChar reports whether r may appear in an entry ID: ASCII
// letters, digits, '-', '.' and '_'.
func validEntryIDChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return r == '-' || r == '.' || r == '_'
}

// similarityKey digests what makes two entries "similar": SPIFFE ID, parent
// ID and the (normalized) selector set.
func similarityKey(e *Entry) string {
	h := sha256.New()
	write := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	write(e.SPIFFEID)
	write(e.ParentID)
	for _, s := range e.Selectors {
		write(s.Type)
		write(s.Value)
	}
	return hex.EncodeToString(h.Sum(nil))
}
