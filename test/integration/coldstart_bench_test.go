package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// BenchmarkServerColdStart measures process start to a SERVING health check on
// the admin socket, with an empty SQLite datastore each time (target < 150 ms).
func BenchmarkServerColdStart(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		s := &server{t: b}
		dir, err := os.MkdirTemp("", "hid")
		if err != nil {
			b.Fatal(err)
		}
		tmpl := newServer(b, serverOptions{}) // writes a config we can reuse
		tmpl.stop()
		conf, _ := os.ReadFile(tmpl.conf)
		s.dir, s.conf = dir, filepath.Join(dir, "server.conf")
		s.socket = tmpl.socket
		os.RemoveAll(filepath.Join(tmpl.dir, "data"))
		if err := os.WriteFile(s.conf, conf, 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		start := time.Now()
		cmd := exec.Command(filepath.Join(binDir, "spire-server"), "run", "-config", s.conf)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		waitServing(b, s.socket, 10*time.Second)
		elapsed := time.Since(start)

		b.StopTimer()
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		os.RemoveAll(dir)
		b.ReportMetric(float64(elapsed.Microseconds())/1000, "ms/start")
		b.StartTimer()
	}
}

func waitServing(tb testing.TB, socket string, limit time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(socket); err == nil {
			conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
				cancel()
				conn.Close()
				if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
					return
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	tb.Fatalf("server on %s not serving after %s", socket, limit)
}
