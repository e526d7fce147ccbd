package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/registry"
	"github.com/prometheus/client_golang/prometheus"
)

// RunRegistry runs the service-registry with args (without the program
// name) until ctx ends, and returns the exit code.
func RunRegistry(ctx context.Context, args []string, getenv Getenv, stdout, stderr io.Writer) int {
	const name = "service-registry"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs, getenv)
	listen := fs.String("listen", ":50051", "Address of the Registry gRPC service (mTLS)")
	ownID := fs.String("spiffeID", flow.RegistryID.String(), "This service's SPIFFE ID, picked when the agent issues several SVIDs")
	leaseTTL := fs.Duration("leaseTTL", registry.DefaultLeaseTTL, "Lifetime of a worker lease without heartbeat")
	workerID := fs.String("workerID", flow.WorkerID.String(), "SPIFFE ID allowed to Register, Heartbeat and Deregister")
	orchID := fs.String("orchestratorID", flow.OrchestratorID.String(), "SPIFFE ID allowed to Discover")
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
			ids, err := parseIDs(*ownID, *workerID, *orchID)
			if err != nil {
				return nil, err
			}
			id, wid, oid := ids[0], ids[1], ids[2]
			return registry.New(registry.Config{Listener: lis, WorkloadAPIAddr: addr, ID: id, WorkerID: wid, OrchestratorID: oid,
				LeaseTTL: *leaseTTL, MaxConnectionAge: c.maxConnAge, Registerer: reg, Logger: log})
		},
		readyErr: func(r runner) error { return readyChan(r.(*registry.Registry).Ready(), "waiting for an X509-SVID") },
	}, stderr)
}
