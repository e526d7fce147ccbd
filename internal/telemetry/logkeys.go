package telemetry

// Log attribute keys (STYLE O2). Messages are constant; every detail is an
// attribute under one of these keys, so logs of the server, the agent and
// SPIRE read alike (the values are SPIRE's key names where SPIRE has one).
// Never log a private key, a raw join token or a JWT: log a digest under
// CSR or Token.
const (
	Address             = "address"
	AgentID             = "agent_id"
	Attempt             = "attempt"
	Attestor            = "attestor"
	Audience            = "audience"
	AuthorityID         = "local_authority_id"
	CallerAddr          = "caller_addr"
	CallerGID           = "caller_gid"
	CallerID            = "caller_id"
	CallerPath          = "caller_path"
	CallerPID           = "caller_pid"
	CallerUID           = "caller_uid"
	Check               = "check"
	Code                = "code"
	Count               = "count"
	CSR                 = "csr" // a hash of the CSR, never the CSR
	Details             = "details"
	Duration            = "duration"
	EntryID             = "entry_id"
	Error               = "error"
	Expiration          = "expiration"
	ExpiresAt           = "expires_at"
	Failures            = "failures"
	FederatedBundle     = "federated_bundle"
	Hint                = "hint"
	JWTAuthorityKeyID   = "jwt_authority_key_id"
	Method              = "method"
	Mode                = "mode"
	NodeAttestorType    = "node_attestor_type"
	ParentID            = "parent_id"
	Path                = "path"
	PID                 = "pid"
	Reason              = "reason"
	RetryInterval       = "retry_interval"
	Revision            = "revision"
	Selector            = "selector"
	Selectors           = "selectors"
	SerialNumber        = "serial_num"
	Service             = "service"
	Slot                = "slot"
	SocketPath          = "socket_path"
	SPIFFEID            = "spiffe_id"
	Status              = "status"
	SubsystemName       = "subsystem_name"
	Token               = "token" // a hash of the token, never the token
	TrustDomain         = "trust_domain"
	Type                = "type"
	UpstreamAuthorityID = "upstream_authority_id"
	Version             = "version"
	WorkloadAttestor    = "workload_attestor"
)
