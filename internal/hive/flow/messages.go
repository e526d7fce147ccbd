package flow

import "time"

// Empty is a message without fields.
type Empty struct{}

// RegisterRequest asks the registry for a lease on a worker instance.
type RegisterRequest struct {
	// Address is the host:port at which the orchestrator reaches the
	// worker's Worker service (mTLS).
	Address string `json:"address"`
	// Capabilities are the task kinds the worker executes, such as "sha256".
	Capabilities []string `json:"capabilities"`
}

// Lease is a worker instance's registration. It ends at ExpiresAt unless a
// Heartbeat renews it first.
type Lease struct {
	InstanceID string    `json:"instance_id"`
	ExpiresAt  time.Time `json:"expires_at"`
	// HeartbeatInterval is how often the registry wants a heartbeat: a
	// third of the lease's lifetime.
	HeartbeatInterval time.Duration `json:"heartbeat_interval_ns"`
}

// HeartbeatRequest renews the lease of an instance.
type HeartbeatRequest struct {
	InstanceID string `json:"instance_id"`
}

// DeregisterRequest ends the lease of an instance.
type DeregisterRequest struct {
	InstanceID string `json:"instance_id"`
}

// DiscoverRequest asks for the live workers offering a capability (step C3
// of Flow C).
type DiscoverRequest struct {
	Capability string `json:"capability"`
}

// Instance is a registered worker as Discover reports it.
type Instance struct {
	InstanceID string `json:"instance_id"`
	// SPIFFEID is the ID the worker authenticated with when it registered;
	// the orchestrator requires the same ID from the worker's TLS server.
	SPIFFEID     string    `json:"spiffe_id"`
	Address      string    `json:"address"`
	Capabilities []string  `json:"capabilities"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// DiscoverResponse lists live instances, oldest registration first.
type DiscoverResponse struct {
	Workers []Instance `json:"workers"`
}

// Task is one unit of work the orchestrator dispatches to a worker.
type Task struct {
	ID         string `json:"id"`
	Capability string `json:"capability"`
	Payload    []byte `json:"payload"`
}

// TaskResult is what a worker returns for a Task.
type TaskResult struct {
	TaskID string `json:"task_id"`
	Output string `json:"output"`
}

// SubmitRequest submits a task to the orchestrator.
type SubmitRequest struct {
	Capability string `json:"capability"`
	Payload    []byte `json:"payload"`
}

// SubmitResponse is the outcome of a task that went through Flow C: C3
// discovery at the registry, then dispatch to a worker.
type SubmitResponse struct {
	TaskID string `json:"task_id"`
	Output string `json:"output"`
	// Worker is the instance that executed the task.
	Worker Instance `json:"worker"`
	// Submitter is the SPIFFE ID of the JWT-SVID that submitted the task.
	Submitter string `json:"submitter"`
	// Discover and Dispatch are the durations of the two steps, as the
	// orchestrator measured them.
	Discover time.Duration `json:"discover_ns"`
	Dispatch time.Duration `json:"dispatch_ns"`
}
