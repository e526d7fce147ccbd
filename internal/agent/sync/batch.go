package sync

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"runtime"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// DefaultBatchSize is the most CSRs sent in one BatchNewX509SVID call: the
// signing rate limit per agent of SPIRE's server.
const DefaultBatchSize = 500

// csrRequest is one entry to sign, with the workload key generated for it.
type csrRequest struct {
	entry *cache.Entry
	key   crypto.Signer
	csr   []byte
}

// Workload key types (agent workload_x509_svid_key_type).
const (
	KeyTypeECP256  = "ec-p256"
	KeyTypeRSA2048 = "rsa-2048"
)

// newWorkloadKey generates a workload private key of keyType.
func newWorkloadKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case KeyTypeECP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("unknown workload key type %q", keyType)
	}
}

// newCSRRequest generates a workload key of keyType and a CSR for entry's
// SPIFFE ID.
func newCSRRequest(entry *cache.Entry, keyType string) (*csrRequest, error) {
	key, err := newWorkloadKey(keyType)
	if err != nil {
		return nil, wrapErr(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}},
		URIs:    []*url.URL{entry.SPIFFEID.URL()},
	}, key)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("make CSR for entry %q: %w", entry.ID, err))
	}
	return &csrRequest{entry: entry, key: key, csr: csr}, nil
}

// signStale signs a new X509-SVID for every entry the cache reports stale
// at now. It returns the number of SVIDs signed.
func (s *Syncer) signStale(ctx context.Context, now time.Time) (int, error) {
	return s.signEntries(ctx, s.cache.StaleEntries(now))
}

// signEntries signs a new X509-SVID for each entry, batchSize CSRs per
// BatchNewX509SVID call in the given order, and stores each batch's SVIDs
// in the cache as it arrives. Entries the server refuses are logged and
// retried at the next sync. It returns the number of SVIDs signed.
func (s *Syncer) signEntries(ctx context.Context, stale []cache.StaleEntry) (int, error) {
	signed := 0
	for len(stale) > 0 {
		n := min(len(stale), s.batchSize)
		batch, err := s.newCSRRequests(stale[:n])
		if err != nil {
			return signed, err
		}
		stale = stale[n:]
		svids, err := s.signBatch(ctx, batch)
		if len(svids) > 0 {
			for id, svid := range svids {
				s.chains[id] = chainKeys(svid.Chain)
			}
			s.cache.SetSVIDs(svids)
			signed += len(svids)
		}
		if err != nil {
			return signed, err
		}
	}
	return signed, nil
}

// newCSRRequests makes a key and CSR per stale entry, spreading the key
// generation over the CPUs.
func (s *Syncer) newCSRRequests(stale []cache.StaleEntry) ([]*csrRequest, error) {
	batch := make([]*csrRequest, len(stale))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, st := range stale {
		if st.SVIDExpiresAt.IsZero() {
			s.log.Debug("Creating X509-SVID", telemetry.EntryID, st.Entry.ID, telemetry.SPIFFEID, st.Entry.SPIFFEID.String())
		} else {
			s.log.Debug("Renewing X509-SVID", telemetry.EntryID, st.Entry.ID, telemetry.SPIFFEID, st.Entry.SPIFFEID.String(), telemetry.ExpiresAt, st.SVIDExpiresAt)
		}
		g.Go(func() (err error) {
			batch[i], err = newCSRRequest(st.Entry, s.keyType)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return batch, nil
}

// signBatch sends one BatchNewX509SVID call and returns the SVIDs signed,
// by entry ID.
func (s *Syncer) signBatch(ctx context.Context, batch []*csrRequest) (map[string]*cache.X509SVID, error) {
	params := make([]*svidv1.NewX509SVIDParams, len(batch))
	for i, r := range batch {
		params[i] = &svidv1.NewX509SVIDParams{EntryId: r.entry.ID, Csr: r.csr}
	}
	var resp *svidv1.BatchNewX509SVIDResponse
	err := s.client.call(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = svidv1.NewSVIDClient(cc).BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{Params: params})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("batch new X509-SVID: %w", err)
	}
	results := resp.GetResults()
	if len(results) != len(batch) {
		return nil, wrapErr(fmt.Errorf("batch new X509-SVID: %d results for %d requests", len(results), len(batch)))
	}
	out := make(map[string]*cache.X509SVID, len(batch))
	for i, r := range results {
		req := batch[i]
		if code := codes.Code(r.GetStatus().GetCode()); code != codes.OK {
			s.log.Warn("Failed to mint X509-SVID", telemetry.EntryID, req.entry.ID, telemetry.Status, code.String(), telemetry.Error, r.GetStatus().GetMessage())
			continue
		}
		chain, err := parseChain(r.GetSvid().GetCertChain())
		if err != nil {
			s.log.Warn("Received an invalid X509-SVID", telemetry.EntryID, req.entry.ID, telemetry.Error, err)
			continue
		}
		if err := checkWorkloadSVID(chain, req); err != nil {
			s.log.Warn("Received an invalid X509-SVID", telemetry.EntryID, req.entry.ID, telemetry.Error, err)
			continue
		}
		out[req.entry.ID] = &cache.X509SVID{Chain: chain, Key: req.key, EntryRevision: req.entry.RevisionNumber}
	}
	return out, nil
}

// checkWorkloadSVID checks that the server certified the requested key for
// the entry's SPIFFE ID.
func checkWorkloadSVID(chain []*x509.Certificate, req *csrRequest) error {
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return err
	}
	if id != req.entry.SPIFFEID {
		return fmt.Errorf("SVID is for %q, entry is for %q", id, req.entry.SPIFFEID)
	}
	if !samePublicKey(chain[0].PublicKey, req.key.Public()) {
		return fmt.Errorf("SVID does not certify the workload key")
	}
	return nil
}
