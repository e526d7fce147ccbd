package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/worker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// RunWorker runs a worker-agents instance with args (without the program
// name) until ctx ends, and returns the exit code.
func RunWorker(ctx context.Context, args []string, getenv Getenv, stdout, stderr io.Writer) int {
	const name = "worker-agents"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs, getenv)
	listen := fs.String("listen", "127.0.0.1:0", "Address of the Worker gRPC service (mTLS); port 0 picks one")
	advertise := fs.String("advertise", "", "host:port registered for the orchestrator (default: the listening address)")
	ownID := fs.String("spiffeID", flow.WorkerID.String(), "This service's SPIFFE ID, picked when the agent issues several SVIDs")
	registryAddr := fs.String("registry", "127.0.0.1:50051", "Address of the service-registry")
	registryID := fs.String("registryID", flow.RegistryID.String(), "SPIFFE ID the service-registry must present")
	orchID := fs.String("orchestratorID", flow.OrchestratorID.String(), "SPIFFE ID allowed to dispatch tasks")
	caps := fs.String("capabilities", strings.Join(worker.Capabilities(), ","), "Comma-separated capabilities to offer")
	svidTimeout := fs.Duration("svidTimeout", worker.DefaultSVIDTimeout, "How long to wait for an X509-SVID before reporting that this worker has no identity")
	retry := fs.Duration("retryInterval", worker.DefaultRetryInterval, "Interval between failed registration attempts")
	trustBundle := fs.String("trustBundle", "", "PEM bundle of the trust domain (e.g. `spire-server bundle show`); with it, a worker without an X509-SVID still calls the registry, which refuses it")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	addr, err := workloadAddr(c.socketPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	return runService(ctx, c, service{
		name:   name,
		listen: *listen,
		newFn: func(lis net.Listener, reg prometheus.Registerer, log *slog.Logger) (runner, error) {
			ids, err := parseIDs(*ownID, *registryID, *orchID)
			if err != nil {
				return nil, err
			}
			id, rid, oid := ids[0], ids[1], ids[2]
			var bundle *x509bundle.Bundle
			if *trustBundle != "" {
				if bundle, err = x509bundle.Load(rid.TrustDomain(), *trustBundle); err != nil {
					return nil, err
				}
			}
			return worker.New(worker.Config{Listener: lis, AdvertiseAddr: *advertise, WorkloadAPIAddr: addr, ID: id,
				RegistryAddr: *registryAddr, RegistryID: rid, OrchestratorID: oid, Capabilities: splitList(*caps),
				SVIDTimeout: *svidTimeout, RetryInterval: *retry, TrustBundle: bundle, MaxConnectionAge: c.maxConnAge, Registerer: reg, Logger: log})
		},
		readyErr: func(r runner) error {
			if !r.(*worker.Worker).Registered() {
				return errors.New("not registered at the service registry")
			}
			return nil
		},
	}, stderr)
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
