package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/telemetry"
)

func errorsJoin(prefix string, err error) error { return fmt.Errorf("%s: %w", prefix, err) }

func contextDeadline() error {
	return fmt.Errorf("attest: %w", context.DeadlineExceeded)
}

// runExporter starts an Exporter on a free loopback port and returns its
// base URL; the exporter stops, and Run's result is checked, at cleanup.
func runExporter(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	e, err := telemetry.New(telemetry.Config{Host: "127.0.0.1", Port: 0, Gatherer: g})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
	select {
	case <-e.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return "http://" + e.Addr().String()
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func TestExporterServesMetrics(t *testing.T) {
	reg := telemetry.NewRegistry()
	m, err := telemetry.NewServerMetrics(reg, telemetry.ServerSources{Entries: func() int { return 2 }})
	if err != nil {
		t.Fatal(err)
	}
	m.SVIDsIssued(telemetry.SVIDTypeJWT, 1)
	base := runExporter(t, reg)
	for _, path := range []string{"/metrics", "/"} {
		t.Run("ok"+path, func(t *testing.T) {
			code, body, hdr := get(t, base+path)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d", path, code)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
			for _, want := range []string{
				"spire_server_entries 2\n",
				`spire_server_svids_issued_total{type="jwt"} 1` + "\n",
				"go_goroutines ",
				"process_start_time_seconds ",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q", want)
				}
			}
		})
	}
}

func TestExporterRefusals(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, tt := range []struct {
		name string
		cfg  telemetry.Config
		want string
	}{
		{"fail/no_gatherer", telemetry.Config{Port: 1}, "telemetry: no gatherer"},
		{"fail/bad_port", telemetry.Config{Port: 70000, Gatherer: reg}, "telemetry: invalid port 70000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := telemetry.New(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New: err = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("fail/port_in_use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		e, err := telemetry.New(telemetry.Config{Host: "127.0.0.1", Port: port, Gatherer: reg})
		if err != nil {
			t.Fatal(err)
		}
		err = e.Run(t.Context())
		if err == nil || !strings.Contains(err.Error(), "telemetry: listen:") {
			t.Fatalf("Run on a used port: err = %v, want telemetry: listen: ...", err)
		}
		if e.Addr() != nil {
			t.Error("Addr set although nothing was bound")
		}
	})
}

// TestInterceptors serves gRPC health over loopback TCP with the server
// and agent interceptors and checks calls are counted by service, method
// and code.
func TestInterceptors(t *testing.T) {
	reg := prometheus.NewRegistry()
	sm, err := telemetry.NewServerMetrics(reg, telemetry.ServerSources{})
	if err != nil {
		t.Fatal(err)
	}
	am, err := telemetry.NewAgentMetrics(reg, telemetry.AgentSources{})
	if err != nil {
		t.Fatal(err)
	}
	// streamDone is the outermost interceptor: it reports when a stream's
	// handler, and so both counting interceptors inside it, have returned.
	streamDone := make(chan struct{}, 1)
	outer := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		streamDone <- struct{}{}
		return err
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(sm.UnaryServerInterceptor(), am.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(outer, sm.StreamServerInterceptor(), am.StreamServerInterceptor()),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Stop()
		<-served
	}()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx := t.Context()

	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nosuch"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check(nosuch): %v, want NotFound", err)
	}
	// A stream canceled by the client ends with Canceled.
	sctx, cancel := context.WithCancel(ctx)
	stream, err := client.Watch(sctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-streamDone
	// An unregistered method never reaches an interceptor.
	if err := conn.Invoke(ctx, "/evil.Service/"+strings.Repeat("x", 64), &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v, want Unimplemented", err)
	}

	mfs := gather(t, reg)
	const svc = "grpc.health.v1.Health"
	for _, tt := range []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"ok/server_check_ok", "spire_server_api_calls_total", map[string]string{"service": svc, "method": "Check", "code": "OK"}, 1},
		{"ok/server_check_notfound", "spire_server_api_calls_total", map[string]string{"service": svc, "method": "Check", "code": "NotFound"}, 1},
		{"ok/server_check_timed", "spire_server_api_call_duration_seconds", map[string]string{"service": svc, "method": "Check"}, 2},
		{"ok/server_watch_canceled", "spire_server_api_calls_total", map[string]string{"service": svc, "method": "Watch", "code": "Canceled"}, 1},
		{"ok/agent_check_ok", "spire_agent_workload_api_calls_total", map[string]string{"method": "Check", "code": "OK"}, 1},
		{"ok/agent_watch_canceled", "spire_agent_workload_api_calls_total", map[string]string{"method": "Watch", "code": "Canceled"}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustValue(t, mfs, tt.metric, tt.labels); got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
	if n := len(mfs["spire_server_api_calls_total"].GetMetric()); n != 3 {
		t.Errorf("%d api call series, want 3 (no series for the unregistered method)", n)
	}
}
