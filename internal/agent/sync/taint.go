package sync

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// chainKeys returns the key IDs a chain depends on: the subject and
// authority key IDs of each certificate, hex encoded. An SVID is signed by
// a tainted authority when one of them is that authority's subject key ID.
func chainKeys(chain []*x509.Certificate) []string {
	keys := make([]string, 0, 2*len(chain))
	for i, c := range chain {
		if len(c.AuthorityKeyId) > 0 {
			keys = append(keys, hex.EncodeToString(c.AuthorityKeyId))
		}
		if i > 0 && len(c.SubjectKeyId) > 0 {
			keys = append(keys, hex.EncodeToString(c.SubjectKeyId))
		}
	}
	return keys
}

func anyIn(keys []string, set map[string]struct{}) bool {
	for _, k := range keys {
		if _, ok := set[k]; ok {
			return true
		}
	}
	return false
}

// newlyTainted returns the subject key IDs of the tainted authorities not
// handled yet.
func (s *Syncer) newlyTainted(tainted []*x509.Certificate) map[string]struct{} {
	out := make(map[string]struct{})
	for _, c := range tainted {
		if len(c.SubjectKeyId) == 0 {
			s.log.Warn("Tainted X.509 authority has no subject key ID; cannot find the SVIDs it signed", "subject", c.Subject.String())
			continue
		}
		k := hex.EncodeToString(c.SubjectKeyId)
		if _, done := s.taintHandled[k]; !done {
			out[k] = struct{}{}
		}
	}
	return out
}

// rotateTainted re-signs, at once, every workload X509-SVID and the agent
// SVID that chain to an authority newly marked tainted in the bundle (as
// SPIRE's agent does after `spire-server localauthority x509 taint`). The
// authorities count as handled only when every rotation succeeded.
func (s *Syncer) rotateTainted(ctx context.Context, entries []*cache.Entry, tainted []*x509.Certificate) error {
	keys := s.newlyTainted(tainted)
	if len(keys) == 0 {
		return nil
	}
	var force []cache.StaleEntry
	for _, e := range entries {
		if anyIn(s.chains[e.ID], keys) {
			force = append(force, cache.StaleEntry{Entry: e})
		}
	}
	agentTainted := anyIn(chainKeys(s.client.SVID().Certificates), keys)
	s.log.Info("Rotating SVIDs signed by tainted X.509 authorities", telemetry.Count, len(force), "agent_svid", agentTainted)
	if len(force) > 0 {
		if _, err := s.signEntries(ctx, force); err != nil {
			return err
		}
	}
	if agentTainted {
		if err := s.client.rotateNow(ctx); err != nil {
			return fmt.Errorf("rotate agent SVID signed by a tainted authority: %w", err)
		}
	}
	for k := range keys {
		s.taintHandled[k] = struct{}{}
	}
	return nil
}
