// Package server wires the SPIFFE server: the datastore, the CA and its
// rotation, the authorized-entry index, the API services and the endpoints
// that serve them. It is the only place that knows all the parts; each part
// gets what it needs through its own Config.
package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/neural-hive/hive-identity/internal/health"
	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/api/agent"
	"github.com/neural-hive/hive-identity/internal/server/api/bundle"
	"github.com/neural-hive/hive-identity/internal/server/api/entry"
	"github.com/neural-hive/hive-identity/internal/server/api/localauthority"
	"github.com/neural-hive/hive-identity/internal/server/api/logger"
	"github.com/neural-hive/hive-identity/internal/server/api/svid"
	"github.com/neural-hive/hive-identity/internal/server/api/trustdomain"
	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/server/ca"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/endpoints"
	"github.com/neural-hive/hive-identity/internal/server/index"
	"github.com/neural-hive/hive-identity/internal/server/nodeattest"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// Defaults of Config, as SPIRE 1.13.
const (
	DefaultSocketPath = "/tmp/spire-server/private/api.sock"
	DefaultBindPort   = 8081
	// JoinTokenPruneInterval is how often expired join tokens are deleted.
	JoinTokenPruneInterval = 10 * time.Minute
)

// Server is a SPIFFE server. Create it with New and run it with Run.
type Server struct {
	c     Config
	log   *slog.Logger
	ready chan struct{}
	tcp   net.Addr // set before ready is closed
}

// New checks c, fills its defaults (documented on Config and its fields)
// and returns a server that is not running yet. It reads no file and opens
// no connection.
func New(c Config) (*Server, error) {
	if c.TrustDomain.IsZero() {
		return nil, errors.New("server: trust domain is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.SocketPath == "" {
		c.SocketPath = DefaultSocketPath
	}
	if c.BindAddress == nil {
		c.BindAddress = &net.TCPAddr{IP: net.IPv4zero, Port: DefaultBindPort}
	}
	if c.CATTL == 0 {
		c.CATTL = ca.DefaultCATTL
	}
	if c.X509SVIDTTL == 0 {
		c.X509SVIDTTL = ca.DefaultX509SVIDTTL
	}
	if c.JWTSVIDTTL == 0 {
		c.JWTSVIDTTL = ca.DefaultJWTSVIDTTL
	}
	if c.CAKeyType == "" {
		c.CAKeyType = ca.KeyTypeECP256
	}
	if c.JWTKeyType == "" {
		c.JWTKeyType = c.CAKeyType
	}
	for _, kt := range []string{c.CAKeyType, c.JWTKeyType} {
		if err := ca.ValidateKeyType(kt); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}

	switch c.DataStore.DatabaseType {
	case "":
		c.DataStore.DatabaseType = datastore.DatabaseSQLite
	case datastore.DatabaseSQLite, datastore.DatabasePostgres:
	default:
		return nil, fmt.Errorf("server: unsupported database type %q", c.DataStore.DatabaseType)
	}
	if c.DataStore.ConnectionString == "" {
		if c.DataStore.DatabaseType != datastore.DatabaseSQLite {
			return nil, errors.New("server: datastore connection string is required")
		}
		if c.DataDir == "" {
			return nil, errors.New("server: data_dir must be configured")
		}
		c.DataStore.ConnectionString = filepath.Join(c.DataDir, "datastore.sqlite3")
	}

	switch c.KeyManager.Kind {
	case "", "disk":
		c.KeyManager.Kind = "disk"
		if c.KeyManager.KeysPath == "" {
			if c.DataDir == "" {
				return nil, errors.New("server: data_dir must be configured")
			}
			c.KeyManager.KeysPath = filepath.Join(c.DataDir, "keys.json")
		}
	case "memory":
	default:
		return nil, fmt.Errorf("server: unsupported key manager %q", c.KeyManager.Kind)
	}
	if u := c.UpstreamAuthority; u != nil && (u.CertFilePath == "" || u.KeyFilePath == "") {
		return nil, errors.New("server: upstream authority needs cert_file_path and key_file_path")
	}
	return &Server{c: c, log: c.Logger, ready: make(chan struct{})}, nil
}

// Ready is closed once the server serves its APIs: the datastore is open,
// the CA has active authorities, the admin socket accepts calls and the
// health and Prometheus listeners (when enabled) are bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// TCPAddr is the address the TCP endpoint listens on (useful with port 0).
// It is nil until Ready is closed.
func (s *Server) TCPAddr() net.Addr {
	select {
	case <-s.ready:
		return s.tcp
	default:
		return nil
	}
}

// Run opens the datastore, initializes the CA, then runs CA rotation, the
// authorized-entry index, the endpoints and join token pruning until ctx is
// canceled or one of them fails. It returns nil after a cancellation and the
// first failure otherwise; everything it started has stopped when it returns.
func (s *Server) Run(ctx context.Context) error {
	c := s.c
	s.log.Info("Starting server", slog.String("trust_domain", c.TrustDomain.Name()),
		slog.String("data_store", c.DataStore.DatabaseType), slog.String("key_manager", c.KeyManager.Kind))

	reg := c.Registry
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	// The sources below are set once the parts exist; until then the
	// gauges read zero.
	var (
		idxP     atomic.Pointer[index.Index]
		subsP    atomic.Pointer[index.Index]
		authsP   atomic.Pointer[func() []telemetry.Authority]
		agentCnt agentCounter
	)
	metrics, err := telemetry.NewServerMetrics(reg, telemetry.ServerSources{
		Entries: func() int {
			if x := idxP.Load(); x != nil {
				return x.EntryCount()
			}
			return 0
		},
		Agents: agentCnt.get,
		PushSubscribers: func() int {
			if x := subsP.Load(); x != nil {
				return x.Subscribers()
			}
			return 0
		},
		Authorities: func() []telemetry.Authority {
			if fn := authsP.Load(); fn != nil {
				return (*fn)()
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}

	raw, err := datastore.Open(ctx, datastore.Config{
		DatabaseType:     c.DataStore.DatabaseType,
		ConnectionString: c.DataStore.ConnectionString,
		Logger:           s.log.With(slog.String("subsystem_name", "datastore")),
		Clock:            c.Clock,
	})
	if err != nil {
		return fmt.Errorf("server: open datastore: %w", err)
	}
	defer func() {
		if err := raw.Close(); err != nil {
			s.log.Error("Failed to close datastore", slog.String(api.KeyError, err.Error()))
		}
	}()
	store := timedStore{Store: raw, m: metrics}

	serverCA, up, err := s.newCA(store)
	if err != nil {
		return err
	}
	if err := serverCA.Init(ctx); err != nil {
		return fmt.Errorf("server: initialize CA: %w", err)
	}
	auths := authorities(serverCA, up, c.CATTL)
	authsP.Store(&auths)

	nodes := newNodeCache(store, c.Clock)
	idx := index.New(api.ServerID(c.TrustDomain).String())
	subsP.Store(idx)
	feed := index.NewFeed(idx, feedSource{Source: store, cache: nodes}, s.log.With(slog.String("subsystem_name", "index")), 0)

	svcs, local, err := s.services(store, countingCA{CA: serverCA, m: metrics}, idx, feed, nodes, metrics)
	if err != nil {
		return err
	}
	serverTLS, err := endpoints.NewServerTLS(ctx, endpoints.ServerTLSConfig{
		TrustDomain: c.TrustDomain,
		Sign: func(ctx context.Context, id spiffeid.ID, key crypto.PublicKey) ([]*x509.Certificate, error) {
			return serverCA.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: id, PublicKey: key})
		},
		ActiveAuthority: func() string {
			if a := serverCA.X509Authorities().Active; a != nil {
				return a.AuthorityID
			}
			return ""
		},
		Roots:    bundleRoots(store),
		AdminIDs: c.AdminIDs,
		Clock:    c.Clock,
		Logger:   s.log.With(slog.String("subsystem_name", "svid_rotator")),
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}

	probe, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("server: health probe key: %w", err)
	}
	serving := make(chan struct{})
	hs := &healthState{store: store, ca: serverCA, td: c.TrustDomain, clock: c.Clock, probeKey: probe.Public(), serving: serving}
	checker, err := health.New(health.Config{
		ListenerEnabled: c.HealthChecks.ListenerEnabled,
		BindAddress:     c.HealthChecks.BindAddress,
		BindPort:        c.HealthChecks.BindPort,
		LivePath:        c.HealthChecks.LivePath,
		ReadyPath:       c.HealthChecks.ReadyPath,
		Checks:          hs.checks(),
		Logger:          s.log,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	var exporter *telemetry.Exporter
	if c.Telemetry.PrometheusEnabled {
		if exporter, err = telemetry.New(telemetry.Config{
			Host: c.Telemetry.PrometheusHost, Port: c.Telemetry.PrometheusPort, Gatherer: reg, Logger: s.log,
		}); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}

	ep, err := endpoints.New(endpoints.Config{
		SocketPath:         c.SocketPath,
		TCP:                &endpoints.TCPConfig{Addr: c.BindAddress, TLS: serverTLS.TLSConfig()},
		Services:           svcs,
		LocalServices:      local,
		Facts:              s.facts(store, nodes),
		Health:             func(ctx context.Context) error { return readiness(checker.Check(ctx)) },
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{metrics.UnaryServerInterceptor()},
		StreamInterceptors: []grpc.StreamServerInterceptor{metrics.StreamServerInterceptor()},
		Logger:             s.log.With(slog.String("subsystem_name", "endpoints")),
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	// Marked before the goroutine starts, so readiness never races it.
	hs.rotating.Store(true)
	g.Go(func() error {
		defer hs.rotating.Store(false)
		return nilOnCancel(serverCA.Run(gctx))
	})
	g.Go(func() error { return nilOnCancel(feed.Run(gctx)) })
	// HA: other servers' writes reach this index at once (PostgreSQL NOTIFY).
	g.Go(func() error { return store.Listen(gctx, feed.Poke) })
	g.Go(func() error { return ep.Run(gctx) })
	g.Go(func() error { return serverTLS.Run(gctx) })
	g.Go(func() error { return checker.Run(gctx) })
	if exporter != nil {
		g.Go(func() error { return exporter.Run(gctx) })
	}
	g.Go(func() error {
		select {
		case <-feed.Loaded():
		case <-gctx.Done():
			return nil
		}
		idxP.Store(idx)
		return agentCnt.run(gctx, store, idx, s.log)
	})
	g.Go(func() error {
		return runPeriodically(gctx, JoinTokenPruneInterval, func(ctx context.Context) {
			if err := store.PruneJoinTokens(ctx, c.Clock().Unix()); err != nil && ctx.Err() == nil {
				s.log.Error("Failed to prune join tokens", slog.String(api.KeyError, err.Error()))
			}
		})
	})
	g.Go(func() error {
		select {
		case <-ep.Ready():
		case <-gctx.Done():
			return nil
		}
		s.tcp = ep.TCPAddr()
		close(serving)
		waits := []<-chan struct{}{checker.Ready()}
		if exporter != nil {
			waits = append(waits, exporter.Ready())
		}
		for _, w := range waits {
			select {
			case <-w:
			case <-gctx.Done():
				return nil
			}
		}
		close(s.ready)
		s.log.Info("Server is ready")
		return nil
	})
	err = g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

func nilOnCancel(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (s *Server) newCA(store timedStore) (*ca.CA, *ca.UpstreamDisk, error) {
	c := s.c
	var km ca.KeyManager
	switch c.KeyManager.Kind {
	case "memory":
		km = ca.NewMemoryKeyManager()
	default:
		disk, err := ca.NewDiskKeyManager(c.KeyManager.KeysPath)
		if err != nil {
			return nil, nil, fmt.Errorf("server: key manager: %w", err)
		}
		km = disk
	}
	var up *ca.UpstreamDisk
	if u := c.UpstreamAuthority; u != nil {
		var err error
		if up, err = ca.NewUpstreamDisk(u.CertFilePath, u.KeyFilePath, u.BundleFilePath); err != nil {
			return nil, nil, fmt.Errorf("server: %w", err)
		}
	}
	journalKey, err := journalKey(c.DataDir)
	if err != nil {
		return nil, nil, err
	}
	serverCA, err := ca.New(ca.Config{
		JournalKey:  journalKey,
		TrustDomain: c.TrustDomain,
		CATTL:       c.CATTL,
		KeyType:     c.CAKeyType,
		Subject:     c.CASubject,
		X509SVIDTTL: c.X509SVIDTTL,
		JWTSVIDTTL:  c.JWTSVIDTTL,
		JWTKeyType:  c.JWTKeyType,
		JWTIssuer:   c.JWTIssuer,
		KeyManager:  km,
		Upstream:    up,
		Store:       store,
		Clock:       c.Clock,
		Logger:      s.log.With(slog.String("subsystem_name", "ca")),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("server: %w", err)
	}
	return serverCA, up, nil
}

// services builds every API service: those served on every listener, and
// those served on the admin socket only.
func (s *Server) services(store timedStore, serverCA countingCA, idx *index.Index, feed *index.Feed, nodes *nodeCache, metrics *telemetry.ServerMetrics) (all, local []endpoints.Service, err error) {
	td := s.c.TrustDomain
	entrySvc, err := entry.New(entry.Config{TrustDomain: td, Store: store, Changed: feed.Poke, Authorized: idx})
	if err != nil {
		return nil, nil, err
	}
	pushSvc, err := entry.NewPush(idx)
	if err != nil {
		return nil, nil, err
	}
	attestors, err := s.nodeAttestors(store)
	if err != nil {
		return nil, nil, err
	}
	bundleSvc, err := bundle.New(bundle.Config{TrustDomain: td, Store: store})
	if err != nil {
		return nil, nil, err
	}
	agentSvc, err := agent.New(agent.Config{TrustDomain: td, Store: store, Clock: s.c.Clock,
		CA: serverCA, NodeAttestors: attestors, AgentSVIDTTL: s.c.X509SVIDTTL, Changed: feed.Poke, CatchUp: feed.CatchUp,
		AgentRemoved: func(id string) {
			nodes.invalidate(id)
			idx.CloseAgent(id)
			feed.Poke()
		},
		Metrics: metrics})
	if err != nil {
		return nil, nil, err
	}
	svidSvc, err := svid.New(svid.Config{TrustDomain: td, CA: serverCA, Entries: idx})
	if err != nil {
		return nil, nil, err
	}
	laSvc, err := localauthority.New(localauthority.Config{TrustDomain: td, CA: serverCA.CA, Store: store})
	if err != nil {
		return nil, nil, err
	}
	tdSvc, err := trustdomain.New(trustdomain.Config{TrustDomain: td, Store: store})
	if err != nil {
		return nil, nil, err
	}
	all = []endpoints.Service{entrySvc, pushSvc, bundleSvc, agentSvc, svidSvc, laSvc, tdSvc}
	if s.c.LogLevel != nil {
		logSvc, err := logger.New(logger.Config{Level: s.c.LogLevel})
		if err != nil {
			return nil, nil, err
		}
		local = append(local, logSvc)
	}
	return all, local, nil
}

// k8sPSATConfig decodes the k8s_psat plugin_data as the CLI hands it over
// (see serverConfig in internal/server/cli/run.go).
func k8sPSATConfig(data map[string]any) nodeattest.K8sPSATConfig {
	cfg := nodeattest.K8sPSATConfig{Clusters: map[string]nodeattest.K8sPSATCluster{}, Getenv: os.Getenv}
	clusters, _ := data["clusters"].(map[string]map[string]any)
	for name, c := range clusters {
		var kc nodeattest.K8sPSATCluster
		kc.ServiceAccountAllowList, _ = c["service_account_allow_list"].([]string)
		kc.Audience, _ = c["audience"].([]string)
		kc.KubeConfigFile, _ = c["kube_config_file"].(string)
		kc.AllowedNodeLabelKeys, _ = c["allowed_node_label_keys"].([]string)
		kc.AllowedPodLabelKeys, _ = c["allowed_pod_label_keys"].([]string)
		cfg.Clusters[name] = kc
	}
	return cfg
}

// nodeAttestors builds the configured node attestors (join_token,
// x509pop, k8s_psat) from their plugin_data.
func (s *Server) nodeAttestors(store timedStore) (map[string]nodeattest.Attestor, error) {
	out := make(map[string]nodeattest.Attestor, len(s.c.NodeAttestors))
	for name, data := range s.c.NodeAttestors {
		switch name {
		case "join_token":
			out[name] = &nodeattest.JoinToken{TD: s.c.TrustDomain, Store: store, Clock: s.c.Clock}
		case "x509pop":
			if mode, _ := data["mode"].(string); mode != "" && mode != "default" {
				return nil, fmt.Errorf("server: x509pop mode %q is not supported", mode)
			}
			cfg := nodeattest.X509PoPConfig{}
			cfg.CABundlePaths, _ = data["ca_bundle_paths"].([]string)
			cfg.CABundlePath, _ = data["ca_bundle_path"].(string)
			cfg.AgentPathTemplate, _ = data["agent_path_template"].(string)
			p, err := nodeattest.NewX509PoP(s.c.TrustDomain, cfg)
			if err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
			p.Clock = s.c.Clock
			out[name] = p
		case "k8s_psat":
			p, err := nodeattest.NewK8sPSAT(s.c.TrustDomain, k8sPSATConfig(data))
			if err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
			out[name] = p
		default:
			return nil, fmt.Errorf("server: unsupported node attestor %q", name)
		}
	}
	return out, nil
}

// facts are the lookups authorization needs for TCP callers.
func (s *Server) facts(store timedStore, nodes *nodeCache) authz.Facts {
	return authz.Facts{
		AdminIDs: s.c.AdminIDs,
		Entries: func(ctx context.Context, id spiffeid.ID) (authz.EntryFlags, error) {
			es, _, err := store.ListEntries(ctx, &datastore.ListEntriesRequest{BySPIFFEID: id.String()})
			if err != nil {
				return authz.EntryFlags{}, err
			}
			var f authz.EntryFlags
			for _, e := range es {
				f.Admin = f.Admin || e.Admin
				f.Downstream = f.Downstream || e.Downstream
			}
			return f, nil
		},
		Agent: nodes.authorize,
	}
}

// bundleRoots returns the X.509 authorities of a trust domain's bundle, as
// stored: the server's own, or a federated one.
func bundleRoots(store timedStore) func(context.Context, spiffeid.TrustDomain) ([]*x509.Certificate, error) {
	return func(ctx context.Context, td spiffeid.TrustDomain) ([]*x509.Certificate, error) {
		b, err := store.FetchBundle(ctx, td.IDString())
		if err != nil {
			return nil, fmt.Errorf("no bundle for trust domain %q: %w", td, err)
		}
		roots := make([]*x509.Certificate, 0, len(b.X509Authorities))
		for _, a := range b.X509Authorities {
			cert, err := x509.ParseCertificate(a.Certificate)
			if err != nil {
				return nil, fmt.Errorf("bundle of %q: %w", td, err)
			}
			roots = append(roots, cert)
		}
		return roots, nil
	}
}

// runPeriodically calls fn every interval until ctx ends, and returns nil.
// It holds no socket, so tests can run it in a synctest bubble (STYLE T3).
func runPeriodically(ctx context.Context, interval time.Duration, fn func(context.Context)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn(ctx)
		}
	}
}

// journalKey names this server's CA journal row: "server/<id>", where id is
// random and kept in <data_dir>/server_id, so servers sharing a PostgreSQL
// datastore (HA) keep separate journals. Without a data dir the default row
// is used.
func journalKey(dataDir string) (string, error) {
	if dataDir == "" {
		return "", nil
	}
	path := filepath.Join(dataDir, "server_id")
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(raw))
		if id == "" {
			return "", fmt.Errorf("server: %s is empty", path)
		}
		return "server/" + id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("server: read server ID: %w", err)
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("server: server ID: %w", err)
	}
	id := hex.EncodeToString(b)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("server: data dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("server: write server ID: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("server: write server ID: %w", err)
	}
	return "server/" + id, nil
}
