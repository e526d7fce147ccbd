package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "grpc_auth_attempts_total", Help: "h"})
	reg.MustRegister(c)
	c.Inc()
	var ready atomic.Bool
	s, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg, Ready: func() error {
		if !ready.Load() {
			return errors.New("waiting for an X509-SVID")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		name, path string
		ready      bool
		code       int
		body       string
	}{
		{name: "ok/metrics", path: "/metrics", code: 200, body: "grpc_auth_attempts_total 1"},
		{name: "ok/live", path: "/live", code: 200, body: `"live"`},
		{name: "fail/not ready", path: "/ready", code: 503, body: "waiting for an X509-SVID"},
		{name: "ok/ready", path: "/ready", ready: true, code: 200, body: `"ready"`},
		{name: "fail/other path", path: "/debug/pprof/", code: 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			code, body := get(tt.path)
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Fatalf("got %d %q, want %d containing %q", code, body, tt.code, tt.body)
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
