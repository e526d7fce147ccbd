package server

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/index"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// agentCountInterval is how often the agent count is refreshed, at most:
// only after the authorized-entry index moved (a node or entry changed).
const agentCountInterval = time.Second

// timedStore is the datastore as every part of the server sees it: each
// operation is timed in spire_server_datastore_operation_duration_seconds
// under its snake_case name. Operations it does not override (none of the
// ones the server calls) pass through untimed. The optional powers of
// *datastore.Store (entry.BatchCreator) are promoted with it.
type timedStore struct {
	*datastore.Store
	m *telemetry.ServerMetrics
}

func (s timedStore) done(op string, start time.Time) {
	s.m.ObserveDatastoreOp(op, time.Since(start))
}

func (s timedStore) Ping(ctx context.Context) error {
	defer s.done("ping", time.Now())
	return s.Store.Ping(ctx)
}

func (s timedStore) CreateEntry(ctx context.Context, e *datastore.Entry) (*datastore.Entry, error) {
	defer s.done("create_entry", time.Now())
	return s.Store.CreateEntry(ctx, e)
}

func (s timedStore) CreateEntries(ctx context.Context, entries []*datastore.Entry) ([]*datastore.Entry, []error, error) {
	defer s.done("create_entries", time.Now()) // "other": not a single-entry latency
	return s.Store.CreateEntries(ctx, entries)
}

func (s timedStore) FetchEntry(ctx context.Context, id string) (*datastore.Entry, error) {
	defer s.done("fetch_entry", time.Now())
	return s.Store.FetchEntry(ctx, id)
}

func (s timedStore) FetchEntries(ctx context.Context, ids []string) (map[string]*datastore.Entry, error) {
	defer s.done("fetch_entries", time.Now())
	return s.Store.FetchEntries(ctx, ids)
}

func (s timedStore) ListEntries(ctx context.Context, req *datastore.ListEntriesRequest) ([]*datastore.Entry, string, error) {
	defer s.done("list_entries", time.Now())
	return s.Store.ListEntries(ctx, req)
}

func (s timedStore) CountEntries(ctx context.Context, req *datastore.ListEntriesRequest) (int32, error) {
	defer s.done("count_entries", time.Now())
	return s.Store.CountEntries(ctx, req)
}

func (s timedStore) UpdateEntry(ctx context.Context, e *datastore.Entry, mask *datastore.EntryMask) (*datastore.Entry, error) {
	defer s.done("update_entry", time.Now())
	return s.Store.UpdateEntry(ctx, e, mask)
}

func (s timedStore) DeleteEntry(ctx context.Context, id string) (*datastore.Entry, error) {
	defer s.done("delete_entry", time.Now())
	return s.Store.DeleteEntry(ctx, id)
}

func (s timedStore) PruneEntries(ctx context.Context, expiresBefore int64) error {
	defer s.done("prune_entries", time.Now())
	return s.Store.PruneEntries(ctx, expiresBefore)
}

func (s timedStore) CreateAttestedNode(ctx context.Context, n *datastore.AttestedNode) (*datastore.AttestedNode, error) {
	defer s.done("create_attested_node", time.Now())
	return s.Store.CreateAttestedNode(ctx, n)
}

func (s timedStore) FetchAttestedNode(ctx context.Context, spiffeID string) (*datastore.AttestedNode, error) {
	defer s.done("fetch_attested_node", time.Now())
	return s.Store.FetchAttestedNode(ctx, spiffeID)
}

func (s timedStore) ListAttestedNodes(ctx context.Context, req *datastore.ListAttestedNodesRequest) ([]*datastore.AttestedNode, string, error) {
	defer s.done("list_attested_nodes", time.Now())
	return s.Store.ListAttestedNodes(ctx, req)
}

func (s timedStore) CountAttestedNodes(ctx context.Context, req *datastore.ListAttestedNodesRequest) (int32, error) {
	defer s.done("count_attested_nodes", time.Now())
	return s.Store.CountAttestedNodes(ctx, req)
}

func (s timedStore) UpdateAttestedNode(ctx context.Context, n *datastore.AttestedNode, mask *datastore.AttestedNodeMask) (*datastore.AttestedNode, error) {
	defer s.done("update_attested_node", time.Now())
	return s.Store.UpdateAttestedNode(ctx, n, mask)
}

func (s timedStore) DeleteAttestedNode(ctx context.Context, spiffeID string) (*datastore.AttestedNode, error) {
	defer s.done("delete_attested_node", time.Now())
	return s.Store.DeleteAttestedNode(ctx, spiffeID)
}

func (s timedStore) SetNodeSelectors(ctx context.Context, spiffeID string, sels []datastore.Selector) error {
	defer s.done("set_node_selectors", time.Now())
	return s.Store.SetNodeSelectors(ctx, spiffeID, sels)
}

func (s timedStore) GetNodeSelectors(ctx context.Context, spiffeID string) ([]datastore.Selector, error) {
	defer s.done("get_node_selectors", time.Now())
	return s.Store.GetNodeSelectors(ctx, spiffeID)
}

func (s timedStore) ListNodeSelectors(ctx context.Context) (map[string][]datastore.Selector, error) {
	defer s.done("list_node_selectors", time.Now())
	return s.Store.ListNodeSelectors(ctx)
}

func (s timedStore) CreateJoinToken(ctx context.Context, t *datastore.JoinToken) error {
	defer s.done("create_join_token", time.Now())
	return s.Store.CreateJoinToken(ctx, t)
}

func (s timedStore) FetchJoinToken(ctx context.Context, token string) (*datastore.JoinToken, error) {
	defer s.done("fetch_join_token", time.Now())
	return s.Store.FetchJoinToken(ctx, token)
}

func (s timedStore) ConsumeJoinToken(ctx context.Context, token string) (*datastore.JoinToken, error) {
	defer s.done("consume_join_token", time.Now())
	return s.Store.ConsumeJoinToken(ctx, token)
}

func (s timedStore) DeleteJoinToken(ctx context.Context, token string) error {
	defer s.done("delete_join_token", time.Now())
	return s.Store.DeleteJoinToken(ctx, token)
}

func (s timedStore) PruneJoinTokens(ctx context.Context, expiresBefore int64) error {
	defer s.done("prune_join_tokens", time.Now())
	return s.Store.PruneJoinTokens(ctx, expiresBefore)
}

func (s timedStore) CreateBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error) {
	defer s.done("create_bundle", time.Now())
	return s.Store.CreateBundle(ctx, b)
}

func (s timedStore) FetchBundle(ctx context.Context, td string) (*datastore.Bundle, error) {
	defer s.done("fetch_bundle", time.Now())
	return s.Store.FetchBundle(ctx, td)
}

func (s timedStore) ListBundles(ctx context.Context, p *datastore.Pagination) ([]*datastore.Bundle, string, error) {
	defer s.done("list_bundles", time.Now())
	return s.Store.ListBundles(ctx, p)
}

func (s timedStore) CountBundles(ctx context.Context) (int32, error) {
	defer s.done("count_bundles", time.Now())
	return s.Store.CountBundles(ctx)
}

func (s timedStore) UpdateBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error) {
	defer s.done("update_bundle", time.Now())
	return s.Store.UpdateBundle(ctx, b)
}

func (s timedStore) SetBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error) {
	defer s.done("set_bundle", time.Now())
	return s.Store.SetBundle(ctx, b)
}

func (s timedStore) AppendBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error) {
	defer s.done("append_bundle", time.Now())
	return s.Store.AppendBundle(ctx, b)
}

func (s timedStore) UpdateBundleFunc(ctx context.Context, td string, fn func(*datastore.Bundle) error) (*datastore.Bundle, error) {
	defer s.done("update_bundle_func", time.Now())
	return s.Store.UpdateBundleFunc(ctx, td, fn)
}

func (s timedStore) DeleteBundle(ctx context.Context, td string, mode datastore.BundleDeleteMode) error {
	defer s.done("delete_bundle", time.Now())
	return s.Store.DeleteBundle(ctx, td, mode)
}

func (s timedStore) FetchCAJournal(ctx context.Context, key string) ([]byte, error) {
	defer s.done("fetch_ca_journal", time.Now())
	return s.Store.FetchCAJournal(ctx, key)
}

func (s timedStore) SetCAJournal(ctx context.Context, key string, data []byte) error {
	defer s.done("set_ca_journal", time.Now())
	return s.Store.SetCAJournal(ctx, key, data)
}

func (s timedStore) CreateFederationRelationship(ctx context.Context, fr *datastore.FederationRelationship) (*datastore.FederationRelationship, error) {
	defer s.done("create_federation_relationship", time.Now())
	return s.Store.CreateFederationRelationship(ctx, fr)
}

func (s timedStore) FetchFederationRelationship(ctx context.Context, tdName string) (*datastore.FederationRelationship, error) {
	defer s.done("fetch_federation_relationship", time.Now())
	return s.Store.FetchFederationRelationship(ctx, tdName)
}

func (s timedStore) ListFederationRelationships(ctx context.Context, p *datastore.Pagination) ([]*datastore.FederationRelationship, string, error) {
	defer s.done("list_federation_relationships", time.Now())
	return s.Store.ListFederationRelationships(ctx, p)
}

func (s timedStore) UpdateFederationRelationship(ctx context.Context, fr *datastore.FederationRelationship) (*datastore.FederationRelationship, error) {
	defer s.done("update_federation_relationship", time.Now())
	return s.Store.UpdateFederationRelationship(ctx, fr)
}

func (s timedStore) DeleteFederationRelationship(ctx context.Context, tdName string) error {
	defer s.done("delete_federation_relationship", time.Now())
	return s.Store.DeleteFederationRelationship(ctx, tdName)
}

func (s timedStore) ListChanges(ctx context.Context, afterSeq int64, limit int) ([]datastore.Change, error) {
	defer s.done("list_changes", time.Now())
	return s.Store.ListChanges(ctx, afterSeq, limit)
}

func (s timedStore) LatestChangeSeq(ctx context.Context) (int64, error) {
	defer s.done("latest_change_seq", time.Now())
	return s.Store.LatestChangeSeq(ctx)
}

// countingCA is the server CA as the API services see it: every SVID signed
// for an agent or a workload is counted in spire_server_svids_issued_total.
// The server's own SVID and the health check's probe are signed by the CA
// directly and are not counted.
type countingCA struct {
	*ca.CA
	m *telemetry.ServerMetrics
}

func (c countingCA) SignX509SVID(ctx context.Context, p ca.X509SVIDParams) ([]*x509.Certificate, error) {
	chain, err := c.CA.SignX509SVID(ctx, p)
	if err == nil {
		c.m.SVIDsIssued(telemetry.SVIDTypeX509, 1)
	}
	return chain, err
}

func (c countingCA) SignJWTSVID(ctx context.Context, p ca.JWTSVIDParams) (string, error) {
	token, err := c.CA.SignJWTSVID(ctx, p)
	if err == nil {
		c.m.SVIDsIssued(telemetry.SVIDTypeJWT, 1)
	}
	return token, err
}

// agentCounter keeps the number of attested agents for spire_server_agents,
// so that a scrape never queries the datastore: it counts once at start and
// again only after the authorized-entry index moved (every node change goes
// through the change log), at most once per agentCountInterval.
type agentCounter struct {
	n atomic.Int64
}

func (c *agentCounter) get() int { return int(c.n.Load()) }

// run counts until ctx ends, and returns nil.
func (c *agentCounter) run(ctx context.Context, store timedStore, idx *index.Index, log *slog.Logger) error {
	last := int64(-1)
	count := func(ctx context.Context) {
		rev := idx.Revision()
		if rev == last {
			return
		}
		n, err := store.CountAttestedNodes(ctx, &datastore.ListAttestedNodesRequest{})
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("Failed to count attested agents", telemetry.Error, err.Error())
			}
			return
		}
		c.n.Store(int64(n))
		last = rev
	}
	count(ctx)
	return runPeriodically(ctx, agentCountInterval, count)
}

// authorities returns the CA's authorities for the expiry gauges: the X.509
// and JWT slots, and, with an UpstreamAuthority, its roots. The lifetime of
// a local authority is the configured ca_ttl (an X.509 CA capped by its
// upstream certificate lives less, and so alerts a little earlier); the
// upstream roots carry their own. The upstream root the active X.509
// authority chains to is "active", the one the prepared authority chains to
// "prepared", the others "old"; when no root is the direct issuer (an
// upstream intermediate signs), the root that expires first is "active".
func authorities(serverCA *ca.CA, up *ca.UpstreamDisk, caTTL time.Duration) func() []telemetry.Authority {
	return func() []telemetry.Authority {
		var out []telemetry.Authority
		add := func(typ string, s ca.Slots) {
			for _, a := range []struct {
				info   *ca.AuthorityInfo
				status string
			}{{s.Active, telemetry.AuthorityActive}, {s.Prepared, telemetry.AuthorityPrepared}, {s.Old, telemetry.AuthorityOld}} {
				if a.info != nil {
					out = append(out, telemetry.Authority{Type: typ, Status: a.status, ExpiresAt: a.info.ExpiresAt, TTL: caTTL})
				}
			}
		}
		x509Slots := serverCA.X509Authorities()
		add(telemetry.AuthorityX509, x509Slots)
		add(telemetry.AuthorityJWT, serverCA.JWTAuthorities())
		if up == nil {
			return out
		}
		roots := up.Roots()
		slices.SortFunc(roots, func(a, b *x509.Certificate) int { return a.NotAfter.Compare(b.NotAfter) })
		issuer := func(a *ca.AuthorityInfo) string {
			if a == nil {
				return ""
			}
			return a.UpstreamAuthorityID
		}
		active, prepared := issuer(x509Slots.Active), issuer(x509Slots.Prepared)
		var ups []telemetry.Authority
		matched := false
		for _, r := range roots {
			id := hex.EncodeToString(r.SubjectKeyId)
			status := telemetry.AuthorityOld
			switch {
			case id != "" && strings.EqualFold(id, active):
				status, matched = telemetry.AuthorityActive, true
			case id != "" && strings.EqualFold(id, prepared):
				status = telemetry.AuthorityPrepared
			}
			ups = append(ups, telemetry.Authority{Type: telemetry.AuthorityUpstream, Status: status,
				ExpiresAt: r.NotAfter, TTL: r.NotAfter.Sub(r.NotBefore)})
		}
		if !matched && len(ups) > 0 {
			ups[0].Status = telemetry.AuthorityActive
		}
		// The collector keeps the first series per (type, status): put the
		// active root first.
		slices.SortStableFunc(ups, func(a, b telemetry.Authority) int {
			return boolRank(a.Status != telemetry.AuthorityActive) - boolRank(b.Status != telemetry.AuthorityActive)
		})
		return append(out, ups...)
	}
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}
