// Package config reads SPIRE's configuration files, server.conf and
// agent.conf, in SPIRE's dialect: HCL version 1 as SPIRE 1.13 parses it.
//
// It owns the file format and its checks: which keys exist in each block
// (an unknown key is a problem naming the key and its line:column), which
// plugin types and names exist and what their plugin_data may hold, the
// values SPIRE accepts (durations like "1h", trust domains, key types,
// log levels) and SPIRE's defaults. A file goes through three steps:
//
//	f, err := config.LoadServer(path, config.LoadOptions{Getenv: os.Getenv}) // read, expand $VARS, decode
//	f.Override(config.ServerOverrides{...})                                   // command-line flags win
//	s, err := f.Check()                                                       // check everything, typed result
//
// Check returns every problem found, each with its location, as an
// *Error, ordered as SPIRE checks them so that the first one is the error SPIRE
// itself would report.
//
// Extension: SPIRE reports only its first problem, ignores unknown keys in
// several blocks (telemetry, experimental, federation, sds, plugin_data) and
// checks plugins only when the server starts; Check reports all of these.
// Keys SPIRE accepts but hive-identity does not implement are accepted with
// a warning (Server.Warnings, Agent.Warnings) rather than silently ignored;
// external plugins (plugin_cmd) and telemetry sinks other than Prometheus
// are refused.
//
// The package does not start anything, open sockets or read environment
// variables by itself: the server CLI converts [Server] into the server's
// runtime Config, and the agent CLI consumes [Agent].
package config
