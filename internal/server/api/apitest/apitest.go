// Package apitest serves API services over a real admin unix socket for
// tests (no bufconn): the request path is the production one, interceptors
// included. The socket lives in a short temporary directory (unix socket
// paths are limited to 108 bytes).
package apitest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/neural-hive/hive-identity/internal/server/endpoints"
)

// Logs collects the server's log lines; safe for concurrent use.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Reset forgets what was logged.
func (l *Logs) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

// Contains reports whether some log line contains s.
func (l *Logs) Contains(s string) bool { return strings.Contains(l.String(), s) }

// Server is a running set of services on an admin socket.
type Server struct {
	// Conn is a client connection over the admin socket: calls are local.
	Conn *grpc.ClientConn
	// Logs are the server's logs, at debug level.
	Logs *Logs
	// SocketPath is the admin socket.
	SocketPath string
}

// Serve serves svcs on a new admin socket until the test ends.
func Serve(tb testing.TB, svcs ...endpoints.Service) *Server {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	logs := &Logs{}
	path := filepath.Join(dir, "api.sock")
	e, err := endpoints.New(endpoints.Config{
		SocketPath: path,
		Services:   svcs,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Ready():
	case err := <-done:
		cancel()
		tb.Fatalf("endpoints: %v", err)
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("endpoints: %v", err)
		}
	})
	return &Server{Conn: conn, Logs: logs, SocketPath: path}
}
