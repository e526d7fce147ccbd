package server

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/health"
	"github.com/neural-hive/hive-identity/internal/server/ca"
)

// Names of the server's health subsystems and the keys of their errors, as
// SPIRE 1.13 reports them on ready_path and live_path:
//
//	{"catalog.datastore":{},"server":{},"server.ca":{},"server.ca.rotator":{}}
const (
	checkDatastore = "catalog.datastore"
	checkServer    = "server"
	checkCA        = "server.ca"
	checkRotator   = "server.ca.rotator"
)

// healthProbePath is the SPIFFE ID path of the X509-SVID the server.ca
// check signs (and throws away), as SPIRE's.
const healthProbePath = "/for/health/check/only"

// healthState is what the checks read about the running server.
type healthState struct {
	store    timedStore
	ca       *ca.CA
	td       spiffeid.TrustDomain
	clock    func() time.Time
	probeKey crypto.PublicKey
	serving  <-chan struct{} // closed once the endpoints serve
	rotating atomic.Bool     // the CA rotation loop is running
}

// healthChecks are the server's subsystems. The server is ready when the
// datastore answers, the APIs serve the trust domain's bundle and the CA
// has an active X.509 and JWT authority that signs; the same checks answer
// the health_checks listener and the gRPC health service that
// `spire-server healthcheck` calls.
func (h *healthState) checks() []health.Check {
	return []health.Check{
		{Name: checkDatastore, ErrorKey: "list_bundle_err", Ready: func(ctx context.Context) error {
			if _, err := h.store.CountBundles(ctx); err != nil {
				return fmt.Errorf("datastore unreachable: %w", err)
			}
			return nil
		}},
		{Name: checkServer, ErrorKey: "get_bundle_err", Ready: func(ctx context.Context) error {
			select {
			case <-h.serving:
			default:
				return errors.New("server APIs are not serving yet")
			}
			if _, err := h.store.FetchBundle(ctx, h.td.IDString()); err != nil {
				return fmt.Errorf("unable to fetch bundle: %w", err)
			}
			return nil
		}},
		{Name: checkCA, ErrorKey: "sign_x509_svid_err", Ready: func(ctx context.Context) error {
			if h.ca.X509Authorities().Active == nil {
				return errors.New("no active X509 authority")
			}
			if h.ca.JWTAuthorities().Active == nil {
				return errors.New("no active JWT authority")
			}
			id, err := spiffeid.FromPath(h.td, healthProbePath)
			if err != nil {
				return err
			}
			_, err = h.ca.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: id, PublicKey: h.probeKey})
			return err
		}},
		{Name: checkRotator, ErrorKey: "rotation_err", Ready: func(context.Context) error {
			if !h.rotating.Load() {
				return errors.New("CA rotation is not running")
			}
			now := h.clock()
			for _, a := range []struct {
				kind string
				info *ca.AuthorityInfo
			}{{"X509", h.ca.X509Authorities().Active}, {"JWT", h.ca.JWTAuthorities().Active}} {
				if a.info != nil && !now.Before(a.info.ExpiresAt) {
					return fmt.Errorf("active %s authority %s expired at %s and was not rotated",
						a.kind, a.info.AuthorityID, a.info.ExpiresAt.UTC().Format(time.RFC3339))
				}
			}
			return nil
		}},
	}
}

// readiness turns a health report into the error of the gRPC health
// service: nil when ready, else every failing subsystem with its error.
func readiness(rep health.Report) error {
	if rep.Ready {
		return nil
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(rep.ReadyDetails)) {
		for key, msg := range rep.ReadyDetails[name] {
			parts = append(parts, name+": "+key+": "+msg)
		}
	}
	return errors.New(strings.Join(parts, "; "))
}
