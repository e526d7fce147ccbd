// Package workload is the Workload API side of a Neural Hive service: it
// opens go-spiffe's X509Source (and JWTSource when asked) on the SPIRE
// agent's socket, warns while the agent gives the service no identity, and
// exports the service's X509-SVID expiry as the runbook's
// spiffe_x509_svid_expiration_seconds.
//
// It has no Workload API client of its own (go-spiffe's is used) and does
// not authenticate calls (pkg/spiffegrpc does).
package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/neural-hive/hive-identity/internal/telemetry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// DefaultWarnEvery is how often Open repeats its warning while the service
// has no X509-SVID.
const DefaultWarnEvery = 10 * time.Second

// maxWatchBackoff caps go-spiffe's linear retry delay (1s, 2s, ... 30s) so a
// service picks up a newly created registration entry within seconds.
const maxWatchBackoff = 3 * time.Second

// Config configures Open.
type Config struct {
	// Addr is the Workload API address, "unix:///run/spire/sockets/agent.sock".
	// Required.
	Addr string
	// ID picks the X509-SVID (and default JWT-SVID) with this SPIFFE ID when
	// the agent issues several to the process (several entries match it);
	// when none has it, or ID is zero, the first one is used.
	ID spiffeid.ID
	// JWT also opens a JWTSource (JWT bundles and JWT-SVIDs).
	JWT bool
	// WarnEvery is how often to warn while there is no X509-SVID. Default
	// DefaultWarnEvery.
	WarnEvery time.Duration
	// Logger receives the waiting and ready lines. Nil: discard.
	Logger *slog.Logger
}

// Sources are the go-spiffe sources of one service, sharing one Workload API
// client. They are safe for concurrent use; Close releases them.
type Sources struct {
	client *workloadapi.Client
	// X509 holds the service's X509-SVID and the X.509 bundles; it is
	// updated as the agent rotates them.
	X509 *workloadapi.X509Source
	// JWT holds the JWT bundles and fetches JWT-SVIDs; nil unless
	// Config.JWT.
	JWT *workloadapi.JWTSource

	closeOnce sync.Once
}

// Open connects to the Workload API and blocks until the service has an
// X509-SVID (and JWT bundles, with Config.JWT), or ctx is done. While it
// waits it logs "No identity from the Workload API yet" at warn, every
// WarnEvery: the usual cause is a missing registration entry.
func Open(ctx context.Context, cfg Config) (*Sources, error) {
	if cfg.Addr == "" {
		return nil, errors.New("workload: no Workload API address")
	}
	if cfg.WarnEvery <= 0 {
		cfg.WarnEvery = DefaultWarnEvery
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(cfg.Addr), workloadapi.WithBackoffStrategy(backoffStrategy{}))
	if err != nil {
		return nil, fmt.Errorf("workload: Workload API client: %w", err)
	}
	s := &Sources{client: client}

	waitCtx, stopWarning := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(cfg.WarnEvery)
		defer t.Stop()
		for {
			select {
			case <-waitCtx.Done():
				return
			case <-t.C:
				log.Warn("No identity from the Workload API yet",
					telemetry.SocketPath, cfg.Addr,
					telemetry.Hint, "is there a registration entry whose selectors match this process?")
			}
		}
	})
	s.X509, err = workloadapi.NewX509Source(ctx, workloadapi.WithClient(client),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID { return pickX509(svids, cfg.ID) }))
	if err == nil && cfg.JWT {
		s.JWT, err = workloadapi.NewJWTSource(ctx, workloadapi.WithClient(client),
			workloadapi.WithDefaultJWTSVIDPicker(func(svids []*jwtsvid.SVID) *jwtsvid.SVID { return pickJWT(svids, cfg.ID) }))
	}
	stopWarning()
	wg.Wait()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("workload: wait for identity: %w", err)
	}
	if svid, err := s.X509.GetX509SVID(); err == nil {
		log.Info("Identity from the Workload API", telemetry.SPIFFEID, svid.ID.String(),
			telemetry.ExpiresAt, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	}
	return s, nil
}

// pickX509 and pickJWT return the SVID with SPIFFE ID id, else the first.
func pickX509(svids []*x509svid.SVID, id spiffeid.ID) *x509svid.SVID {
	if i := slices.IndexFunc(svids, func(s *x509svid.SVID) bool { return s.ID == id }); i >= 0 {
		return svids[i]
	}
	return svids[0]
}

func pickJWT(svids []*jwtsvid.SVID, id spiffeid.ID) *jwtsvid.SVID {
	if i := slices.IndexFunc(svids, func(s *jwtsvid.SVID) bool { return s.ID == id }); i >= 0 {
		return svids[i]
	}
	return svids[0]
}

// Close closes the sources and the client. It is idempotent.
func (s *Sources) Close() {
	s.closeOnce.Do(func() {
		if s.JWT != nil {
			_ = s.JWT.Close()
		}
		if s.X509 != nil {
			_ = s.X509.Close()
		}
		_ = s.client.Close()
	})
}

// backoffStrategy retries Workload API watches after 1s, 2s, then every
// maxWatchBackoff.
type backoffStrategy struct{}

func (backoffStrategy) NewBackoff() workloadapi.Backoff { return &backoff{} }

type backoff struct{ n int }

func (b *backoff) Next() time.Duration {
	b.n++
	return min(time.Duration(b.n)*time.Second, maxWatchBackoff)
}

func (b *backoff) Reset() { b.n = 0 }
