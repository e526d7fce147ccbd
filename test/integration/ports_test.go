package integration

import (
	"net"
	"sync"
	"testing"
)

// handedOut remembers every port freePort returned in this test binary: the
// kernel may offer a just-closed port again, and two listeners of one
// process (say the health and the metrics listener) must not get the same one.
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// freePort asks the kernel for a free loopback TCP port that no earlier call
// returned.
func freePort(tb testing.TB) int {
	tb.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port
		}
	}
	tb.Fatal("no fresh loopback port after 100 tries")
	return 0
}
