package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"github.com/neural-hive/hive-identity/internal/config"
	"github.com/neural-hive/hive-identity/internal/server"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

const runSynopsis = "Starts the server"

// minimumUmask keeps files the server creates from being group-writable or
// readable by others, as SPIRE does.
const minimumUmask = 0o027

// setupRun is `spire-server run`: it loads server.conf (SPIRE's flags
// override the file), builds the logger, converts the configuration and runs
// the server until ctx is cancelled (SIGINT/SIGTERM). A configuration error
// is printed to stderr as SPIRE prints it (the bare message, then each
// problem with its location when there are several) with exit 1; a server
// failure is logged as "Server crashed" with exit 1; a clean stop logs
// "Server stopped gracefully" and exits 0.
func setupRun(fs *flag.FlagSet, e *env) func(ctx context.Context) int {
	flags := registerServerFlags(fs)
	return func(ctx context.Context) int {
		loaded, logs, err := flags.load(ctx, e)
		if logs != nil {
			defer logs.close()
		}
		if err != nil {
			_ = e.errorf("%s", config.FormatError("", err))
			return 1
		}
		logger := loaded.logger
		cfg, err := serverConfig(ctx, loaded.cfg, logger, loaded.level)
		if err != nil {
			_ = e.errorf("%v\n", err)
			return 1
		}
		setUmask(ctx, logger)
		if err := runServer(ctx, cfg); err != nil {
			logger.ErrorContext(ctx, "Server crashed", slog.Any(telemetry.Error, err))
			return 1
		}
		logger.InfoContext(ctx, "Server stopped gracefully")
		return 0
	}
}

// runServer builds the server from cfg and runs it until ctx is cancelled;
// it returns nil after a cancellation.
func runServer(ctx context.Context, cfg server.Config) error {
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// setUmask raises the process umask to at least minimumUmask, warning when
// it was more permissive.
func setUmask(ctx context.Context, logger *slog.Logger) {
	current := syscall.Umask(minimumUmask)
	if current&minimumUmask != minimumUmask {
		logger.WarnContext(ctx, "Current umask is too permissive; raising it",
			slog.String("umask", fmt.Sprintf("%#04o", current)),
			slog.String("new_umask", fmt.Sprintf("%#04o", current|minimumUmask)))
	}
	syscall.Umask(current | minimumUmask)
}

// serverConfig converts the checked file configuration into the server's
// runtime Config, refusing what the server cannot run without (a DataStore
// and a KeyManager, as SPIRE's catalog does) and warning about settings the
// server does not implement.
//
// NodeAttestors maps each attestor name to its plugin_data: join_token has
// none; x509pop has "mode" (string), "ca_bundle_paths" ([]string, from
// ca_bundle_path or ca_bundle_paths), "agent_path_template" (string, empty
// for the default) and "spiffe_prefix" (string); k8s_psat has "clusters"
// (map[string]map[string]any: cluster name to "service_account_allow_list"
// []string, "audience" []string (nil: SPIRE's default, empty: the API
// server's audiences), "kube_config_file" string, "allowed_node_label_keys"
// and "allowed_pod_label_keys" []string).
func serverConfig(ctx context.Context, s *config.Server, logger *slog.Logger, level *slog.LevelVar) (server.Config, error) {
	if s.DataStore == nil {
		return server.Config{}, errNoDataStore
	}
	if s.KeyManager == nil {
		return server.Config{}, errors.New(`plugin type "KeyManager" constraint not satisfied: expected exactly 1 but got 0`)
	}
	cfg := server.Config{
		TrustDomain: s.TrustDomain,
		BindAddress: s.BindAddress,
		SocketPath:  s.SocketPath,
		DataDir:     s.DataDir,
		Logger:      logger,
		LogLevel:    level,
		CATTL:       s.CATTL,
		CAKeyType:   s.CAKeyType,
		CASubject:   s.CASubject,
		X509SVIDTTL: s.X509SVIDTTL,
		JWTSVIDTTL:  s.JWTSVIDTTL,
		JWTKeyType:  s.JWTKeyType,
		JWTIssuer:   s.JWTIssuer,
		AdminIDs:    s.AdminIDs,
		DataStore: server.DataStoreConfig{
			DatabaseType:     s.DataStore.DatabaseType,
			ConnectionString: s.DataStore.ConnectionString,
		},
		KeyManager: server.KeyManagerConfig{
			Kind:     s.KeyManager.Kind,
			KeysPath: s.KeyManager.KeysPath,
		},
		NodeAttestors: map[string]map[string]any{},
		HealthChecks: server.HealthChecksConfig{
			ListenerEnabled: s.HealthChecks.ListenerEnabled,
			BindAddress:     s.HealthChecks.BindAddress,
			BindPort:        s.HealthChecks.BindPort,
			LivePath:        s.HealthChecks.LivePath,
			ReadyPath:       s.HealthChecks.ReadyPath,
		},
		Telemetry: server.TelemetryConfig{
			PrometheusEnabled: s.Telemetry.PrometheusEnabled,
			PrometheusHost:    s.Telemetry.PrometheusHost,
			PrometheusPort:    s.Telemetry.PrometheusPort,
		},
	}
	if cfg.BindAddress == nil {
		cfg.BindAddress = &net.TCPAddr{IP: net.IPv4zero, Port: config.DefaultServerBindPort}
	}
	if u := s.UpstreamAuthority; u != nil {
		cfg.UpstreamAuthority = &server.UpstreamDiskConfig{
			CertFilePath:   u.CertFilePath,
			KeyFilePath:    u.KeyFilePath,
			BundleFilePath: u.BundleFilePath,
		}
	}
	for _, na := range s.NodeAttestors {
		data := map[string]any{}
		if x := na.X509PoP; x != nil {
			data["mode"] = x.Mode
			data["ca_bundle_paths"] = x.CABundlePaths
			data["agent_path_template"] = x.AgentPathTemplate
			data["spiffe_prefix"] = x.SPIFFEPrefix
		}
		if k := na.K8sPSAT; k != nil {
			clusters := map[string]map[string]any{}
			for name, cl := range k.Clusters {
				clusters[name] = map[string]any{
					"service_account_allow_list": cl.ServiceAccountAllowList,
					"audience":                   cl.Audience,
					"kube_config_file":           cl.KubeConfigFile,
					"allowed_node_label_keys":    cl.AllowedNodeLabelKeys,
					"allowed_pod_label_keys":     cl.AllowedPodLabelKeys,
				}
			}
			data["clusters"] = clusters
		}
		cfg.NodeAttestors[na.Name] = data
	}

	for _, ignored := range []struct {
		set bool
		key string
	}{
		{s.AgentTTL != 0 && s.AgentTTL != s.X509SVIDTTL, "agent_ttl"},
		{!s.RateLimitAttestation, "ratelimit.attestation"},
		{!s.RateLimitSigning, "ratelimit.signing"},
		{s.PruneAttestedNodesExpiredFor != 0, "prune_attested_nodes_expired_for"},
		{s.Telemetry.MetricPrefix != "", "telemetry.MetricPrefix"},
	} {
		if ignored.set {
			logger.WarnContext(ctx, "Configuration setting is not supported and is ignored", slog.String("key", ignored.key))
		}
	}
	return cfg, nil
}
