package workloadapi_test

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/neural-hive/hive-identity/internal/agent/cache"
	"github.com/neural-hive/hive-identity/internal/agent/workloadapi"
	"github.com/neural-hive/hive-identity/internal/agent/workloadattest"
)

func TestNewValidates(t *testing.T) {
	c, _ := cache.New(cache.Config{TrustDomain: td})
	att := workloadattest.NewUnix(workloadattest.UnixConfig{})
	for _, tt := range []struct {
		name string
		cfg  workloadapi.Config
		msg  string
	}{
		{name: "fail/no socket", cfg: workloadapi.Config{TrustDomain: td, Cache: c, Attestor: att}, msg: "socket path is required"},
		{name: "fail/no trust domain", cfg: workloadapi.Config{SocketPath: "/x", Cache: c, Attestor: att}, msg: "trust domain is required"},
		{name: "fail/no cache", cfg: workloadapi.Config{SocketPath: "/x", TrustDomain: td, Attestor: att}, msg: "cache is required"},
		{name: "fail/no attestor", cfg: workloadapi.Config{SocketPath: "/x", TrustDomain: td, Cache: c}, msg: "attestor is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := workloadapi.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %q", err, tt.msg)
			}
		})
	}
}

func TestSocketModes(t *testing.T) {
	t.Run("ok/defaults: world-connectable socket, directory created 0755", func(t *testing.T) {
		base := shortDir(t)
		sock := filepath.Join(base, "sub", "agent.sock")
		newEnv(t, func(c *workloadapi.Config) { c.SocketPath = sock })
		fi, err := os.Lstat(sock)
		if err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o777 {
			t.Fatalf("socket mode = %v (%v), want socket 0777", fi.Mode(), err)
		}
		di, err := os.Stat(filepath.Dir(sock))
		if err != nil || di.Mode().Perm() != 0o755 {
			t.Fatalf("dir mode = %v (%v), want 0755", di.Mode(), err)
		}
	})
	t.Run("ok/configured modes", func(t *testing.T) {
		base := shortDir(t)
		sock := filepath.Join(base, "d", "agent.sock")
		if err := os.Mkdir(filepath.Dir(sock), 0o700); err != nil {
			t.Fatal(err)
		}
		newEnv(t, func(c *workloadapi.Config) {
			c.SocketPath = sock
			c.SocketMode = 0o660
			c.DirMode = 0o750
		})
		fi, _ := os.Lstat(sock)
		di, _ := os.Stat(filepath.Dir(sock))
		if fi.Mode().Perm() != 0o660 || di.Mode().Perm() != 0o750 {
			t.Fatalf("modes = %v / %v, want 0660 / 0750", fi.Mode().Perm(), di.Mode().Perm())
		}
	})
}

func TestStaleSocketReplacedRegularFileRefused(t *testing.T) {
	// A stale socket (left by a killed agent) is replaced.
	stale := filepath.Join(shortDir(t), "agent.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(stale); err != nil {
		t.Fatal("test setup: no stale socket")
	}
	e := newEnv(t, func(c *workloadapi.Config) { c.SocketPath = stale })
	e.addIdentity(entry("a", "spiffe://neural-hive.local/x", mySelector()))
	if _, err := e.client().FetchJWTSVID(withHeader(testCtx(t)), &workload.JWTSVIDRequest{Audience: []string{"x"}}); err != nil {
		t.Fatalf("server on replaced socket: %v", err)
	}
	e.stop()

	dir := shortDir(t)
	path := filepath.Join(dir, "agent.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := cache.New(cache.Config{TrustDomain: td})
	srv, err := workloadapi.New(workloadapi.Config{SocketPath: path, TrustDomain: td, Cache: c, Attestor: workloadattest.NewUnix(workloadattest.UnixConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Run(ctx); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("Run = %v, want refusal", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "not a socket" {
		t.Fatal("regular file was touched")
	}
	if err := srv.Run(ctx); err == nil || !strings.Contains(err.Error(), "already ran") {
		t.Fatalf("second Run = %v", err)
	}
}

// TestStopClosesOpenStreams: R1/R2. Cancel ends Run even with open
// streams, returns nil and removes the socket (checked by env.stop).
func TestStopClosesOpenStreams(t *testing.T) {
	e := newEnv(t)
	e.addIdentity(entry("a", "spiffe://neural-hive.local/x", mySelector()))
	c := e.client()
	var streams []grpc.ServerStreamingClient[workload.X509SVIDResponse]
	for range 5 {
		s, err := c.FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	e.stop()
	for _, s := range streams {
		if _, err := s.Recv(); err == nil {
			t.Fatal("stream still open after Run returned")
		}
	}
}

// TestHealth: the grpc.health.v1 service on the socket, used by
// spire-agent healthcheck: SERVING once the cache has the trust bundle.
func TestHealth(t *testing.T) {
	e := newEnv(t)
	hc := grpc_health_v1.NewHealthClient(e.conn())
	resp, err := hc.Check(testCtx(t), &grpc_health_v1.HealthCheckRequest{})
	if err != nil || resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("Check = %v, %v", resp, err)
	}
	_, err = hc.Check(testCtx(t), &grpc_health_v1.HealthCheckRequest{Service: "x"})
	wantStatus(t, err, codes.InvalidArgument, "per-service health is not supported")

	// Without a bundle (agent not synced yet): NOT_SERVING.
	empty, _ := cache.New(cache.Config{TrustDomain: td})
	e2 := newEnv(t, func(c *workloadapi.Config) { c.Cache = empty })
	resp, err = grpc_health_v1.NewHealthClient(e2.conn()).Check(testCtx(t), &grpc_health_v1.HealthCheckRequest{})
	if err != nil || resp.Status != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Check without bundle = %v, %v", resp, err)
	}
}

// TestReflection_WE07_WA02: WE-07, WA-02. The socket supports gRPC reflection and
// exposes the SpiffeWorkloadAPI service unextended, beside health.
func TestReflection_WE07_WA02(t *testing.T) {
	e := newEnv(t)
	stream, err := rpb.NewServerReflectionClient(e.conn()).ServerReflectionInfo(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	want := []string{"SpiffeWorkloadAPI", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
	if !slices.Equal(names, want) {
		t.Fatalf("services = %v, want %v", names, want)
	}
}
