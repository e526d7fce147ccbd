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

// BenchmarkServerColdStart measures `spire-server run` process start to a
// SERVING health check on the admin socket, with an empty SQLite datastore
// and no keys each time (target < 150 ms).
func BenchmarkServerColdStart(b *testing.B) {
	s := newServer(b, serverOptions{}) // writes the config; its first start is not measured
	s.stop()
	var lat []time.Duration
	for b.Loop() {
		if err := os.RemoveAll(filepath.Join(s.dir, "data")); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		cmd := exec.Command(filepath.Join(binDir, "spire-server"), "run", "-config", s.conf)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		waitServing(b, s.socket, 10*time.Second)
		lat = append(lat, time.Since(start))
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	reportPercentiles(b, lat)
}

// waitServing polls the gRPC health service on socket until it answers SERVING.
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
	tb.Fatalf("nothing serving on %s after %s", socket, limit)
}
