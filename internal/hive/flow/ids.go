package flow

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// The SPIFFE IDs of the Flow C services, as the runbook names them
// (spiffe://neural-hive.local/ns/<namespace>/sa/<service-account>). They are
// the defaults of the services' flags.
var (
	// RegistryID is the service-registry (namespace neural-hive-execution).
	RegistryID = spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/service-registry")
	// WorkerID is the worker-agents: the only ID that may register at the
	// registry.
	WorkerID = spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents")
	// OrchestratorID is the orchestrator-dynamic: the only ID that may
	// discover workers and dispatch tasks to them; the audience of the
	// JWT-SVIDs that submit tasks.
	OrchestratorID = spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/orchestrator-dynamic")
	// SubmitterID is the local Flow C client (flowc-submit). Not in the
	// runbook: make run gives it an entry so that a task can be submitted
	// from the command line.
	SubmitterID = spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-orchestration/sa/flowc-submit")
)
