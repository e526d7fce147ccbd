package workloadapi

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// http2Preface is the client connection preface of HTTP/2 (RFC 9113 §3.4),
// which gRPC clients send first.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// sniffTimeout bounds how long an accepted connection may stay silent
// before it is classified.
const sniffTimeout = 10 * time.Second

// mux accepts unix connections, takes the caller's credentials, and hands
// each connection to the gRPC listener (HTTP/2 preface) or to the HTTP/1.1
// listener (anything else).
type mux struct {
	l       *net.UnixListener
	procDir string
	log     *slog.Logger
	metrics Metrics // counts every accepted connection opened and closed once
	grpc    *connQueue
	http    *connQueue

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{} // accepted, not yet handed off
}

func newMux(l *net.UnixListener, procDir string, log *slog.Logger, metrics Metrics) *mux {
	m := &mux{
		l:       l,
		procDir: procDir,
		log:     log,
		metrics: metrics,
		done:    make(chan struct{}),
		pending: make(map[net.Conn]struct{}),
	}
	m.grpc = newConnQueue(l.Addr())
	m.http = newConnQueue(l.Addr())
	return m
}

// serve accepts connections until Close; it returns nil after Close.
func (m *mux) serve() error {
	var delay time.Duration
	for {
		conn, err := m.l.AcceptUnix()
		if err != nil {
			select {
			case <-m.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("Accept failed; retrying", "error", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-m.done:
				return nil
			}
			continue
		}
		delay = 0
		if !m.track(conn) {
			conn.Close()
			return nil
		}
		m.metrics.WorkloadAPIConnOpened()
		m.wg.Go(func() { m.handle(conn) })
	}
}

func (m *mux) track(conn net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		return false
	default:
	}
	m.pending[conn] = struct{}{}
	return true
}

func (m *mux) untrack(conn net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pending, conn)
}

func (m *mux) handle(conn *net.UnixConn) {
	defer m.untrack(conn)
	who, err := peerCred(conn)
	if err == nil && who.PID <= 0 {
		err = errors.New("could not resolve caller information")
	}
	if err != nil {
		m.log.Warn("Connection failed during accept", "error", err)
		conn.Close()
		m.metrics.WorkloadAPIConnClosed()
		return
	}
	w, err := newProcWatcher(m.procDir, who)
	if err != nil {
		m.log.Warn("Connection failed during accept", "pid", who.PID, "error", err)
		conn.Close()
		m.metrics.WorkloadAPIConnClosed()
		return
	}
	pc := &peerConn{Conn: conn, caller: who, watcher: w, onClose: m.metrics.WorkloadAPIConnClosed}

	_ = conn.SetReadDeadline(time.Now().Add(sniffTimeout))
	isH2, sniffed, err := sniff(conn)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		pc.Close()
		return
	}
	pc.sniffed = sniffed
	q := m.http
	if isH2 {
		q = m.grpc
	}
	select {
	case q.ch <- pc:
	case <-q.closed:
		pc.Close()
	case <-m.done:
		pc.Close()
	}
}

// sniff reads until the bytes either diverge from the HTTP/2 preface or
// complete it.
func sniff(conn net.Conn) (isH2 bool, read []byte, err error) {
	buf := make([]byte, len(http2Preface))
	n := 0
	for n < len(buf) {
		k, err := conn.Read(buf[n:])
		n += k
		if !bytes.HasPrefix([]byte(http2Preface), buf[:n]) {
			return false, buf[:n], nil
		}
		if err != nil {
			return false, nil, err
		}
	}
	return true, buf, nil
}

// Close stops accepting, aborts connections not yet handed off, and waits
// for the per-connection goroutines. It is idempotent.
func (m *mux) Close() {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		close(m.done)
		for c := range m.pending {
			c.Close()
		}
		m.mu.Unlock()
		m.l.Close()
		m.wg.Wait()
	})
}

// connQueue is a net.Listener fed by the mux.
type connQueue struct {
	addr      net.Addr
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closeOnce.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
