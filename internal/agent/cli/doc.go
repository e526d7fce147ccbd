// Package cli is the command line of spire-agent: the command registry, the
// help layout of SPIRE 1.13's agent CLI, and the commands themselves
// (healthcheck, api fetch x509, api fetch jwt, api validate jwt, api watch,
// validate and run).
//
// The api commands are clients of the SPIFFE Workload API. They speak it with
// go-spiffe's generated client (github.com/spiffe/go-spiffe/v2/proto/spiffe/workload)
// so that the raw responses can be printed as SPIRE prints them, and `api watch`
// uses go-spiffe's workloadapi client. Flags, defaults, output layouts, streams
// and exit codes follow SPIRE 1.13; the help sentences are our own.
//
// The package does not implement the agent: `run` parses SPIRE's run flags and
// hands them to startAgent (run_agent.go), and `validate` checks a configuration
// file without starting anything.
package cli
