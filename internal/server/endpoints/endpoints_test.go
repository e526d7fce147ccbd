package endpoints_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/endpoints"
)

// fakeEntry is an Entry service whose methods misbehave on purpose, to test
// what the interceptors do with stray errors and panics.
type fakeEntry struct {
	entryv1.UnimplementedEntryServer
}

func (fakeEntry) Register(r grpc.ServiceRegistrar) { entryv1.RegisterEntryServer(r, fakeEntry{}) }

func (fakeEntry) CountEntries(ctx context.Context, _ *entryv1.CountEntriesRequest) (*entryv1.CountEntriesResponse, error) {
	if c, ok := api.CallerFrom(ctx); !ok || !c.Local {
		return nil, status.Error(codes.Internal, "caller not in context")
	}
	panic("boom: secret stack detail")
}

func (fakeEntry) GetEntry(context.Context, *entryv1.GetEntryRequest) (*types.Entry, error) {
	return nil, errors.New("sqlite: no such table: entries")
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type running struct {
	path string
	conn *grpc.ClientConn
	logs *syncBuffer
	stop func() error
}

func start(t *testing.T, socketPath string, c endpoints.Config) *running {
	t.Helper()
	logs := &syncBuffer{}
	c.SocketPath = socketPath
	c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := endpoints.New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	conn, err := grpc.NewClient("unix://"+socketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			_ = conn.Close()
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &running{path: socketPath, conn: conn, logs: logs, stop: stop}
}

func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func TestAdminSocket_Modes(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, "private", "api.sock")
	r := start(t, path, endpoints.Config{})
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o770 {
		t.Errorf("socket directory mode = %v, want 0770", di.Mode().Perm())
	}
	si, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if si.Mode()&fs.ModeSocket == 0 || si.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, want socket 0660", si.Mode())
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run returned %v on cancel, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind after stop: %v", err)
	}
}

func TestAdminSocket_Stale(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, "api.sock")

	// A socket nobody serves (a crashed server) is replaced.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	_ = l.Close()
	r := start(t, path, endpoints.Config{})
	checkHealth(t, r.conn, grpc_health_v1.HealthCheckResponse_SERVING)

	// A socket another server still serves is not taken over.
	e, err := endpoints.New(endpoints.Config{SocketPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server: %v, want in use", err)
	}
	checkHealth(t, r.conn, grpc_health_v1.HealthCheckResponse_SERVING)
}

func TestAdminSocket_RefusesOtherFiles(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, "api.sock")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := endpoints.New(endpoints.Config{SocketPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run: %v, want not a socket", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Fatal("the file was changed")
	}
}

func checkHealth(t *testing.T, conn *grpc.ClientConn, want grpc_health_v1.HealthCheckResponse_ServingStatus) {
	t.Helper()
	resp, err := grpc_health_v1.NewHealthClient(conn).Check(context.Background(), &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != want {
		t.Fatalf("health = %v, want %v", resp.Status, want)
	}
}

func TestHealth(t *testing.T) {
	var mu sync.Mutex
	var healthErr error
	r := start(t, filepath.Join(tempDir(t), "api.sock"), endpoints.Config{Health: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return healthErr
	}})
	checkHealth(t, r.conn, grpc_health_v1.HealthCheckResponse_SERVING)
	mu.Lock()
	healthErr = errors.New("datastore unreachable")
	mu.Unlock()
	checkHealth(t, r.conn, grpc_health_v1.HealthCheckResponse_NOT_SERVING)

	_, err := grpc_health_v1.NewHealthClient(r.conn).Check(context.Background(), &grpc_health_v1.HealthCheckRequest{Service: "x"})
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "per-service health is not supported" {
		t.Fatalf("per-service: %v", err)
	}
}

func TestInterceptors(t *testing.T) {
	r := start(t, filepath.Join(tempDir(t), "api.sock"), endpoints.Config{Services: []endpoints.Service{fakeEntry{}}})
	client := entryv1.NewEntryClient(r.conn)

	t.Run("fail/panic becomes Internal without detail", func(t *testing.T) {
		_, err := client.CountEntries(context.Background(), &entryv1.CountEntriesRequest{})
		if status.Code(err) != codes.Internal || status.Convert(err).Message() != "internal error" {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(r.logs.String(), "Panic in RPC handler") {
			t.Fatalf("panic not logged: %s", r.logs.String())
		}
	})
	t.Run("fail/stray error becomes Internal without detail", func(t *testing.T) {
		_, err := client.GetEntry(context.Background(), &entryv1.GetEntryRequest{Id: "x"})
		if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "sqlite") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fail/local caller may not call agent RPCs", func(t *testing.T) {
		stream, err := client.SyncAuthorizedEntries(context.Background())
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.PermissionDenied ||
			status.Convert(err).Message() != "authorization denied for method /spire.api.server.entry.v1.Entry/SyncAuthorizedEntries" {
			t.Fatalf("err = %v", err)
		}
	})
}
