package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// caller is the kernel's view of the process at the other end of a
// connection, taken with SO_PEERCRED when the connection was accepted.
type caller struct {
	PID      int32
	UID, GID uint32
}

// peerCred returns the credentials of the peer of a unix connection.
func peerCred(conn *net.UnixConn) (caller, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return caller{}, err
	}
	var (
		cred    *unix.Ucred
		credErr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return caller{}, err
	}
	if credErr != nil {
		return caller{}, credErr
	}
	return caller{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

// procWatcher guards against PID reuse: it holds the caller's /proc/<pid>
// directory open from the moment the connection is accepted and remembers
// the process start time, so that after attesting the PID the Workload API
// can check the attested process is still the one that connected (as
// SPIRE's peertracker does). Its methods are safe for concurrent use.
type procWatcher struct {
	procDir string
	caller  caller
	start   string

	mu sync.Mutex
	fd int // -1 once closed
}

func newProcWatcher(procDir string, c caller) (*procWatcher, error) {
	if c.PID <= 0 {
		return nil, errors.New("could not resolve caller information")
	}
	dir := procPath(procDir, c.PID, "")
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("could not open caller's proc directory: %w", err)
	}
	start, err := startTime(procDir, c.PID)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &procWatcher{procDir: procDir, caller: c, start: start, fd: fd}, nil
}

// IsAlive returns nil if the process that connected still runs under the
// same PID: its proc directory is readable through the handle taken at
// accept time, its start time is unchanged, and it is owned by the uid and
// gid the kernel reported for the connection.
func (w *procWatcher) IsAlive() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return errors.New("caller is no longer being watched")
	}
	var buf [4096]byte
	if _, err := unix.ReadDirent(w.fd, buf[:]); err != nil {
		return fmt.Errorf("caller exit suspected due to failed readdirent: %w", err)
	}
	start, err := startTime(w.procDir, w.caller.PID)
	if err != nil {
		return fmt.Errorf("caller exit suspected due to failure to get starttime: %w", err)
	}
	if start != w.start {
		return fmt.Errorf("new process detected: process starttime %v does not match original caller %v", start, w.start)
	}
	var st unix.Stat_t
	if err := unix.Stat(procPath(w.procDir, w.caller.PID, ""), &st); err != nil {
		return fmt.Errorf("caller exit suspected due to failed proc stat: %w", err)
	}
	if st.Uid != w.caller.UID {
		return fmt.Errorf("new process detected: process uid %v does not match original caller %v", st.Uid, w.caller.UID)
	}
	if st.Gid != w.caller.GID {
		return fmt.Errorf("new process detected: process gid %v does not match original caller %v", st.Gid, w.caller.GID)
	}
	return nil
}

// Close releases the proc directory handle. It is idempotent.
func (w *procWatcher) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}

func procPath(procDir string, pid int32, name string) string {
	return filepath.Join(procDir, strconv.FormatInt(int64(pid), 10), name)
}

// startTime returns field 22 (starttime) of /proc/<pid>/stat.
func startTime(procDir string, pid int32) (string, error) {
	b, err := os.ReadFile(procPath(procDir, pid, "stat"))
	if err != nil {
		return "", fmt.Errorf("could not read caller stat: %w", err)
	}
	// The command name (field 2) is parenthesized and may hold spaces or
	// parentheses: fields 3.. follow the last ')'.
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 || strings.IndexByte(s, '(') < 0 {
		return "", errors.New("bad stat data: task name is not parenthesized")
	}
	rest := strings.Fields(s[end+1:])
	const startField = 22 - 3 // index of field 22 in fields 3..
	if len(rest) <= startField {
		return "", errors.New("bad stat data or unsupported platform")
	}
	return rest[startField], nil
}

// peerConn is an accepted connection with the caller's credentials and the
// PID-reuse watcher. The first bytes, read to tell HTTP/2 from HTTP/1.1,
// are replayed.
type peerConn struct {
	net.Conn
	caller  caller
	watcher *procWatcher
	sniffed []byte
	onClose func() // called once, by the first Close

	closeOnce sync.Once
	closeErr  error
}

func (c *peerConn) Read(p []byte) (int, error) {
	if len(c.sniffed) > 0 {
		n := copy(p, c.sniffed)
		c.sniffed = c.sniffed[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Close closes the connection and the watcher. It is idempotent.
func (c *peerConn) Close() error {
	c.closeOnce.Do(func() {
		c.watcher.Close()
		c.closeErr = c.Conn.Close()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return c.closeErr
}

// peerInfo is the gRPC AuthInfo (and HTTP context value) of a connection.
type peerInfo struct {
	credentials.CommonAuthInfo
	caller  caller
	watcher *procWatcher
}

func (peerInfo) AuthType() string { return "spiffe-peer" }

var errNotPeerConn = errors.New("connection was not accepted by the peer tracker")

// peerCreds hands the caller of a peerConn to gRPC as its AuthInfo. It
// performs no handshake: the Workload API needs no TLS (WE-04).
type peerCreds struct{}

var _ credentials.TransportCredentials = peerCreds{}

func (peerCreds) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn.Close()
	return nil, nil, errNotPeerConn
}

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	pc, ok := conn.(*peerConn)
	if !ok {
		conn.Close()
		return nil, nil, errNotPeerConn
	}
	return pc, peerInfo{caller: pc.caller, watcher: pc.watcher}, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "spiffe-peer", ServerName: "spire-agent"}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

func (peerCreds) OverrideServerName(string) error { return nil }

type peerKey struct{}

// peerFromContext returns the caller of a gRPC call or HTTP request.
func peerFromContext(ctx context.Context) (peerInfo, bool) {
	if pi, ok := ctx.Value(peerKey{}).(peerInfo); ok {
		return pi, true
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return peerInfo{}, false
	}
	pi, ok := p.AuthInfo.(peerInfo)
	return pi, ok
}
