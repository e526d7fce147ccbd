package datastore

import (
	"context"
	"slices"
	"strings"
)

const nodeColumns = `n.id, n.spiffe_id, n.attestation_type, n.cert_serial_number, n.cert_not_after,
	n.new_cert_serial_number, n.new_cert_not_after, n.can_reattest`

// CreateAttestedNode stores a new attested node (its Selectors are not
// stored: see SetNodeSelectors). It fails with ErrAlreadyExists when the
// SPIFFE ID is taken.
func (s *Store) CreateAttestedNode(ctx context.Context, n *AttestedNode) (*AttestedNode, error) {
	if n == nil || n.SPIFFEID == "" {
		return nil, newError(ErrInvalidArgument, "attested node is missing its SPIFFE ID")
	}
	out := *n
	out.Selectors = nil
	err := s.write(ctx, func(t *txn) error {
		if _, err := t.exec(ctx, `INSERT INTO attested_nodes (spiffe_id, attestation_type, cert_serial_number, cert_not_after,
	new_cert_serial_number, new_cert_not_after, can_reattest, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			out.SPIFFEID, out.AttestationType, out.CertSerialNumber, out.CertNotAfter, out.NewCertSerialNumber,
			out.NewCertNotAfter, out.CanReattest, t.now); err != nil {
			if t.d.isUniqueViolation(err) {
				return newError(ErrAlreadyExists, "attested node %q already exists", out.SPIFFEID)
			}
			return internalError("create attested node", err)
		}
		return t.appendChange(ctx, ChangeNode, out.SPIFFEID, OpCreate)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// FetchAttestedNode returns the attested node with its selectors, or
// ErrNotFound.
func (s *Store) FetchAttestedNode(ctx context.Context, spiffeID string) (*AttestedNode, error) {
	var out *AttestedNode
	err := s.read(ctx, func(t *txn) error {
		var err error
		if _, out, err = t.nodeByID(ctx, spiffeID); err != nil {
			return err
		}
		out.Selectors, err = t.nodeSelectors(ctx, spiffeID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListAttestedNodes returns the attested nodes matching every filter of req
// in creation order, a page at a time when req.Pagination has a page size
// (the token, also stored in req.Pagination.Token, is "" after the last
// page). Selectors are filled when req.FetchSelectors is set. Banned means
// both serial numbers are empty; ByExpiresBefore compares CertNotAfter.
func (s *Store) ListAttestedNodes(ctx context.Context, req *ListAttestedNodesRequest) ([]*AttestedNode, string, error) {
	if req == nil {
		req = &ListAttestedNodesRequest{}
	}
	conds, args, err := nodeFilters(req)
	if err != nil {
		return nil, "", err
	}
	q, args, err := pageQuery("SELECT "+nodeColumns+" FROM attested_nodes n", "n", conds, args, req.Pagination)
	if err != nil {
		return nil, "", err
	}
	var nodes []*AttestedNode
	var token string
	err = s.read(ctx, func(t *txn) error {
		var rowIDs []int64
		var err error
		if nodes, rowIDs, err = t.queryNodes(ctx, q, args...); err != nil {
			return err
		}
		var keep int
		keep, token = pageCut(req.Pagination, rowIDs)
		nodes = nodes[:keep]
		if req.FetchSelectors {
			return t.fillNodeSelectors(ctx, nodes)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return nodes, token, nil
}

// CountAttestedNodes returns how many attested nodes match the filters of
// req (pagination and FetchSelectors are ignored).
func (s *Store) CountAttestedNodes(ctx context.Context, req *ListAttestedNodesRequest) (int32, error) {
	if req == nil {
		req = &ListAttestedNodesRequest{}
	}
	conds, args, err := nodeFilters(req)
	if err != nil {
		return 0, err
	}
	var n int32
	err = s.read(ctx, func(t *txn) error {
		if err := t.queryRow(ctx, "SELECT COUNT(*) FROM attested_nodes n"+where(conds), args...).Scan(&n); err != nil {
			return internalError("count attested nodes", err)
		}
		return nil
	})
	return n, err
}

func nodeFilters(req *ListAttestedNodesRequest) ([]string, []any, error) {
	var conds []string
	var args []any
	if req.ByAttestationType != "" {
		conds = append(conds, "n.attestation_type = ?")
		args = append(args, req.ByAttestationType)
	}
	if req.ByBanned != nil {
		if *req.ByBanned {
			conds = append(conds, "n.cert_serial_number = '' AND n.new_cert_serial_number = ''")
		} else {
			conds = append(conds, "(n.cert_serial_number <> '' OR n.new_cert_serial_number <> '')")
		}
	}
	if req.ByExpiresBefore != 0 {
		conds = append(conds, "n.cert_not_after < ?")
		args = append(args, req.ByExpiresBefore)
	}
	if req.ByCanReattest != nil {
		conds = append(conds, "n.can_reattest = ?")
		args = append(args, *req.ByCanReattest)
	}
	if req.BySelectorMatch != nil {
		if len(req.BySelectorMatch.Selectors) == 0 {
			return nil, nil, newError(ErrInvalidArgument, "cannot list by empty selectors set")
		}
		c, a, err := selectorFilter("node_selectors", "spiffe_id", req.BySelectorMatch.Selectors).in("n.spiffe_id", req.BySelectorMatch.Match)
		if err != nil {
			return nil, nil, err
		}
		conds = append(conds, c)
		args = append(args, a...)
	}
	return conds, args, nil
}

// UpdateAttestedNode replaces the fields of the stored node n.SPIFFEID that
// mask selects (all when mask is nil) and returns the node without its
// selectors. It fails with ErrNotFound when the node does not exist.
func (s *Store) UpdateAttestedNode(ctx context.Context, n *AttestedNode, mask *AttestedNodeMask) (*AttestedNode, error) {
	if n == nil {
		return nil, newError(ErrInvalidArgument, "missing attested node")
	}
	if mask == nil {
		mask = &AttestedNodeMask{CertSerialNumber: true, CertNotAfter: true, NewCertSerialNumber: true, NewCertNotAfter: true, CanReattest: true}
	}
	var out *AttestedNode
	err := s.write(ctx, func(t *txn) error {
		rowID, cur, err := t.nodeByID(ctx, n.SPIFFEID)
		if err != nil {
			return err
		}
		if mask.CertSerialNumber {
			cur.CertSerialNumber = n.CertSerialNumber
		}
		if mask.CertNotAfter {
			cur.CertNotAfter = n.CertNotAfter
		}
		if mask.NewCertSerialNumber {
			cur.NewCertSerialNumber = n.NewCertSerialNumber
		}
		if mask.NewCertNotAfter {
			cur.NewCertNotAfter = n.NewCertNotAfter
		}
		if mask.CanReattest {
			cur.CanReattest = n.CanReattest
		}
		if _, err := t.exec(ctx, `UPDATE attested_nodes SET cert_serial_number = ?, cert_not_after = ?,
	new_cert_serial_number = ?, new_cert_not_after = ?, can_reattest = ? WHERE id = ?`,
			cur.CertSerialNumber, cur.CertNotAfter, cur.NewCertSerialNumber, cur.NewCertNotAfter, cur.CanReattest, rowID); err != nil {
			return internalError("update attested node", err)
		}
		out = cur
		return t.appendChange(ctx, ChangeNode, cur.SPIFFEID, OpUpdate)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteAttestedNode deletes the node and its selectors and returns the node
// as FetchAttestedNode would have, or fails with ErrNotFound.
func (s *Store) DeleteAttestedNode(ctx context.Context, spiffeID string) (*AttestedNode, error) {
	var out *AttestedNode
	err := s.write(ctx, func(t *txn) error {
		rowID, n, err := t.nodeByID(ctx, spiffeID)
		if err != nil {
			return err
		}
		if n.Selectors, err = t.nodeSelectors(ctx, spiffeID); err != nil {
			return err
		}
		if _, err := t.exec(ctx, "DELETE FROM node_selectors WHERE spiffe_id = ?", spiffeID); err != nil {
			return internalError("delete node selectors", err)
		}
		if _, err := t.exec(ctx, "DELETE FROM attested_nodes WHERE id = ?", rowID); err != nil {
			return internalError("delete attested node", err)
		}
		out = n
		return t.appendChange(ctx, ChangeNode, spiffeID, OpDelete)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetNodeSelectors replaces the selectors of a node (which need not be
// attested yet), stored sorted and without duplicates.
func (s *Store) SetNodeSelectors(ctx context.Context, spiffeID string, sels []Selector) error {
	if spiffeID == "" {
		return newError(ErrInvalidArgument, "node selectors are missing the SPIFFE ID")
	}
	sels = normalizeSelectors(sels)
	return s.write(ctx, func(t *txn) error {
		if _, err := t.exec(ctx, "DELETE FROM node_selectors WHERE spiffe_id = ?", spiffeID); err != nil {
			return internalError("set node selectors", err)
		}
		for chunk := range slices.Chunk(sels, inChunk) {
			var q strings.Builder
			q.WriteString("INSERT INTO node_selectors (spiffe_id, type, value) VALUES ")
			args := make([]any, 0, 3*len(chunk))
			for i, sel := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?)")
				args = append(args, spiffeID, sel.Type, sel.Value)
			}
			if _, err := t.exec(ctx, q.String(), args...); err != nil {
				return internalError("set node selectors", err)
			}
		}
		return t.appendChange(ctx, ChangeNode, spiffeID, OpUpdate)
	})
}

// GetNodeSelectors returns the selectors of a node, sorted; empty when it
// has none.
func (s *Store) GetNodeSelectors(ctx context.Context, spiffeID string) ([]Selector, error) {
	var out []Selector
	err := s.read(ctx, func(t *txn) error {
		var err error
		out, err = t.nodeSelectors(ctx, spiffeID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListNodeSelectors returns the selectors of every node that has some,
// keyed by SPIFFE ID, each list sorted.
func (s *Store) ListNodeSelectors(ctx context.Context) (map[string][]Selector, error) {
	out := map[string][]Selector{}
	err := s.read(ctx, func(t *txn) error {
		rows, err := t.query(ctx, "SELECT spiffe_id, type, value FROM node_selectors")
		if err != nil {
			return internalError("list node selectors", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var sel Selector
			if err := rows.Scan(&id, &sel.Type, &sel.Value); err != nil {
				return internalError("list node selectors", err)
			}
			out[id] = append(out[id], sel)
		}
		if err := rows.Err(); err != nil {
			return internalError("list node selectors", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, sels := range out {
		slices.SortFunc(sels, compareSelectors)
	}
	return out, nil
}

func (t *txn) nodeByID(ctx context.Context, spiffeID string) (int64, *AttestedNode, error) {
	nodes, rowIDs, err := t.queryNodes(ctx, "SELECT "+nodeColumns+" FROM attested_nodes n WHERE n.spiffe_id = ?", spiffeID)
	if err != nil {
		return 0, nil, err
	}
	if len(nodes) == 0 {
		return 0, nil, newError(ErrNotFound, "attested node %q not found", spiffeID)
	}
	return rowIDs[0], nodes[0], nil
}

func (t *txn) queryNodes(ctx context.Context, q string, args ...any) ([]*AttestedNode, []int64, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, nil, internalError("query attested nodes", err)
	}
	defer rows.Close()
	var nodes []*AttestedNode
	var rowIDs []int64
	for rows.Next() {
		var n AttestedNode
		var rowID int64
		if err := rows.Scan(&rowID, &n.SPIFFEID, &n.AttestationType, &n.CertSerialNumber, &n.CertNotAfter,
			&n.NewCertSerialNumber, &n.NewCertNotAfter, &n.CanReattest); err != nil {
			return nil, nil, internalError("scan attested node", err)
		}
		nodes = append(nodes, &n)
		rowIDs = append(rowIDs, rowID)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, internalError("query attested nodes", err)
	}
	return nodes, rowIDs, nil
}

// nodeSelectors returns the sorted selectors of one node (never nil).
func (t *txn) nodeSelectors(ctx context.Context, spiffeID string) ([]Selector, error) {
	rows, err := t.query(ctx, "SELECT type, value FROM node_selectors WHERE spiffe_id = ?", spiffeID)
	if err != nil {
		return nil, internalError("get node selectors", err)
	}
	defer rows.Close()
	out := []Selector{}
	for rows.Next() {
		var sel Selector
		if err := rows.Scan(&sel.Type, &sel.Value); err != nil {
			return nil, internalError("get node selectors", err)
		}
		out = append(out, sel)
	}
	if err := rows.Err(); err != nil {
		return nil, internalError("get node selectors", err)
	}
	slices.SortFunc(out, compareSelectors)
	return out, nil
}

// fillNodeSelectors sets the Selectors of nodes.
func (t *txn) fillNodeSelectors(ctx context.Context, nodes []*AttestedNode) error {
	byID := make(map[string]*AttestedNode, len(nodes))
	ids := make([]any, 0, len(nodes))
	for _, n := range nodes {
		n.Selectors = []Selector{}
		byID[n.SPIFFEID] = n
		ids = append(ids, n.SPIFFEID)
	}
	for chunk := range slices.Chunk(ids, inChunk) {
		rows, err := t.query(ctx, "SELECT spiffe_id, type, value FROM node_selectors WHERE spiffe_id IN ("+placeholders(len(chunk))+")", chunk...)
		if err != nil {
			return internalError("get node selectors", err)
		}
		for rows.Next() {
			var id string
			var sel Selector
			if err := rows.Scan(&id, &sel.Type, &sel.Value); err != nil {
				rows.Close()
				return internalError("get node selectors", err)
			}
			if n := byID[id]; n != nil {
				n.Selectors = append(n.Selectors, sel)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return internalError("get node selectors", err)
		}
	}
	for _, n := range nodes {
		slices.SortFunc(n.Selectors, compareSelectors)
	}
	return nil
}
