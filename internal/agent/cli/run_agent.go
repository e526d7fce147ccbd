package cli

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"

	"github.com/neural-hive/hive-identity/internal/agent"
	"github.com/neural-hive/hive-identity/internal/agent/nodeattest"
	"github.com/neural-hive/hive-identity/internal/agent/workloadattest"
	"github.com/neural-hive/hive-identity/internal/config"
)

// startAgent builds the agent from the checked configuration and runs it
// until ctx is cancelled, returning nil on a clean stop. It is the single
// seam between the CLI and internal/agent.
func startAgent(ctx context.Context, a *loadedAgent) error {
	cfg, err := agentConfig(a)
	if err != nil {
		return err
	}
	ag, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return ag.Run(ctx)
}

// agentConfig converts the file configuration into the agent's Config.
func agentConfig(a *loadedAgent) (agent.Config, error) {
	c := a.cfg
	cfg := agent.Config{
		TrustDomain:             c.TrustDomain,
		ServerAddress:           net.JoinHostPort(c.ServerAddress, strconv.Itoa(c.ServerPort)),
		InsecureBootstrap:       c.InsecureBootstrap,
		RetryBootstrap:          c.RetryBootstrap,
		DataDir:                 c.DataDir,
		KeyManager:              c.KeyManager.Kind,
		KeyManagerDir:           c.KeyManager.Directory,
		SocketPath:              c.SocketPath,
		PollInterval:            c.SyncInterval,
		WorkloadKeyType:         c.WorkloadX509SVIDKeyType,
		JWTSVIDCacheSize:        c.JWTSVIDCacheMaxSize,
		AllowedForeignJWTClaims: c.AllowedForeignJWTClaims,
		Logger:                  a.logger,
		Rand:                    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		Telemetry: agent.TelemetryConfig{
			PrometheusEnabled: c.Telemetry.PrometheusEnabled,
			PrometheusHost:    c.Telemetry.PrometheusHost,
			PrometheusPort:    c.Telemetry.PrometheusPort,
		},
		HealthChecks: agent.HealthChecksConfig{
			ListenerEnabled: c.HealthChecks.ListenerEnabled,
			BindAddress:     c.HealthChecks.BindAddress,
			BindPort:        c.HealthChecks.BindPort,
			LivePath:        c.HealthChecks.LivePath,
			ReadyPath:       c.HealthChecks.ReadyPath,
		},
	}
	if c.TrustBundleURL != "" && c.TrustBundlePath == "" && !c.InsecureBootstrap {
		return cfg, errors.New("trust_bundle_url is not supported by this agent: use trust_bundle_path or insecure_bootstrap")
	}
	if c.TrustBundlePath != "" {
		bundle, err := agent.LoadTrustBundle(c.TrustBundlePath, c.TrustBundleFormat, c.TrustDomain)
		if err != nil {
			return cfg, err
		}
		cfg.TrustBundle = bundle
	}
	if c.WorkloadAttestorUnix != nil {
		cfg.UnixAttestor = &workloadattest.UnixConfig{
			DiscoverWorkloadPath: c.WorkloadAttestorUnix.DiscoverWorkloadPath,
			WorkloadSizeLimit:    c.WorkloadAttestorUnix.WorkloadSizeLimit,
		}
	}
	if k := c.WorkloadAttestorK8s; k != nil {
		cfg.K8sAttestor = &workloadattest.K8sConfig{
			KubeletReadOnlyPort:        k.KubeletReadOnlyPort,
			KubeletSecurePort:          k.KubeletSecurePort,
			MaxPollAttempts:            k.MaxPollAttempts,
			PollRetryInterval:          k.PollRetryInterval,
			KubeletCAPath:              k.KubeletCAPath,
			SkipKubeletVerification:    k.SkipKubeletVerification,
			TokenPath:                  k.TokenPath,
			CertificatePath:            k.CertificatePath,
			PrivateKeyPath:             k.PrivateKeyPath,
			UseAnonymousAuthentication: k.UseAnonymousAuthentication,
			NodeName:                   k.NodeName,
			NodeNameEnv:                k.NodeNameEnv,
			Getenv:                     os.Getenv,
			ReloadInterval:             k.ReloadInterval,
			DisableContainerSelectors:  k.DisableContainerSelectors,
			ProcDir:                    k.ProcDir,
		}
	}
	att, err := nodeAttestor(c)
	if err != nil {
		return cfg, err
	}
	cfg.NodeAttestor = att
	return cfg, nil
}

// nodeAttestor picks the node attestor as SPIRE does: a join token (flag or
// file) wins over the NodeAttestor plugin; with neither the agent cannot run.
func nodeAttestor(c *config.Agent) (nodeattest.Attestor, error) {
	if c.JoinToken != "" {
		return nodeattest.NewJoinToken(c.JoinToken), nil
	}
	switch c.NodeAttestor.Name {
	case "join_token":
		// A join_token plugin without a token can only run on a stored SVID.
		return nil, nil
	case "x509pop":
		p := c.NodeAttestor.X509PoP
		return nodeattest.NewX509PoP(p.CertificatePath, p.PrivateKeyPath, p.IntermediatesPath)
	case "k8s_psat":
		p := c.NodeAttestor.K8sPSAT
		return nodeattest.NewK8sPSAT(nodeattest.K8sPSATConfig{Cluster: p.Cluster, TokenPath: p.TokenPath})
	case "":
		return nil, errors.New("failed to load plugins: expected one NodeAttestor plugin")
	}
	return nil, fmt.Errorf("unknown NodeAttestor %q", c.NodeAttestor.Name)
}
