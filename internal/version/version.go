// Package version holds the version both binaries print for --version.
package version

// Version is the release the binaries report. The Makefile stamps it at link
// time with -ldflags -X; it is otherwise never written. It names the SPIRE
// release whose CLI and APIs hive-identity matches.
var Version = "1.13.3-hive-dev"
