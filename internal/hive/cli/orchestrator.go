package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/orchestrator"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// RunOrchestrator runs the orchestrator-dynamic with args (without the
// program name) until ctx ends, and returns the exit code.
func RunOrchestrator(ctx context.Context, args []string, getenv Getenv, stdout, stderr io.Writer) int {
	const name = "orchestrator-dynamic"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs, getenv)
	listen := fs.String("listen", ":50052", "Address of the Orchestrator gRPC service (TLS + JWT-SVID)")
	ownID := fs.String("spiffeID", flow.OrchestratorID.String(), "This service's SPIFFE ID, picked when the agent issues several SVIDs")
	registryAddr := fs.String("registry", "127.0.0.1:50051", "Address of the service-registry")
	registryID := fs.String("registryID", flow.RegistryID.String(), "SPIFFE ID the service-registry must present")
	workerID := fs.String("workerID", flow.WorkerID.String(), "SPIFFE ID workers must present")
	var submitters idList
	fs.Var(&submitters, "allowSubmitter", "SPIFFE ID allowed to submit tasks; repeat for more (default: any ID of the orchestrator's trust domain)")
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
			ids, err := parseIDs(*ownID, *registryID, *workerID)
			if err != nil {
				return nil, err
			}
			id, rid, wid := ids[0], ids[1], ids[2]
			var allow spiffegrpc.Authorizer
			if len(submitters) > 0 {
				allow = spiffegrpc.AuthorizeOneOf(submitters...)
			}
			return orchestrator.New(orchestrator.Config{Listener: lis, WorkloadAPIAddr: addr, ID: id, RegistryAddr: *registryAddr,
				RegistryID: rid, WorkerID: wid, Submitters: allow, MaxConnectionAge: c.maxConnAge, Registerer: reg, Logger: log})
		},
		readyErr: func(r runner) error {
			return readyChan(r.(*orchestrator.Orchestrator).Ready(), "waiting for an X509-SVID and JWT bundles")
		},
	}, stderr)
}

// parseIDs parses the SPIFFE ID flags a service reads, in order; the first
// malformed one is the error.
func parseIDs(ss ...string) ([]spiffeid.ID, error) {
	ids := make([]spiffeid.ID, len(ss))
	for i, s := range ss {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

// idList is a repeatable SPIFFE ID flag.
type idList []spiffeid.ID

func (l *idList) String() string { return "" }

func (l *idList) Set(s string) error {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return err
	}
	*l = append(*l, id)
	return nil
}
