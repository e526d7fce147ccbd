package worker

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeRegistry records calls; errs queues errors for the next calls of a
// method.
type fakeRegistry struct {
	mu    sync.Mutex
	calls []string
	errs  map[string][]error
	n     int
}

func (f *fakeRegistry) next(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method)
	if q := f.errs[method]; len(q) > 0 {
		f.errs[method] = q[1:]
		return q[0]
	}
	return nil
}

func (f *fakeRegistry) Register(context.Context, *flow.RegisterRequest, ...grpc.CallOption) (*flow.Lease, error) {
	if err := f.next("Register"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return &flow.Lease{InstanceID: "lease-" + string(rune('0'+f.n)), HeartbeatInterval: 10 * time.Second}, nil
}

func (f *fakeRegistry) Heartbeat(_ context.Context, req *flow.HeartbeatRequest, _ ...grpc.CallOption) (*flow.Lease, error) {
	if err := f.next("Heartbeat " + req.InstanceID); err != nil {
		return nil, err
	}
	return &flow.Lease{InstanceID: req.InstanceID, HeartbeatInterval: 10 * time.Second}, nil
}

func (f *fakeRegistry) Deregister(_ context.Context, req *flow.DeregisterRequest, _ ...grpc.CallOption) (*flow.Empty, error) {
	return &flow.Empty{}, f.next("Deregister " + req.InstanceID)
}

func (f *fakeRegistry) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ", ")
}

type fakeListener struct{}

func (fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (fakeListener) Close() error              { return nil }
func (fakeListener) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000} }

// keepRegistered: register (retrying after a failure), heartbeat at the
// registry's interval, register again when the lease is lost, deregister
// at shutdown.
func TestKeepRegistered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, logs := spiffegrpctest.NewLogger(t)
		w, err := New(Config{Listener: fakeListener{}, WorkloadAPIAddr: "unix:///nowhere", RegistryAddr: "127.0.0.1:1",
			RetryInterval: 5 * time.Second, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		reg := &fakeRegistry{errs: map[string][]error{
			"Register":          {status.Error(codes.Unavailable, "registry down")},
			"Heartbeat lease-1": {nil, status.Error(codes.NotFound, "lease not found")},
		}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- w.keepRegistered(ctx, reg) }()

		synctest.Wait()
		if w.Registered() || reg.log() != "Register" {
			t.Fatalf("after a failed registration: registered=%v calls %s", w.Registered(), reg.log())
		}
		time.Sleep(5 * time.Second) // retry interval
		synctest.Wait()
		if !w.Registered() {
			t.Fatal("not registered after the retry")
		}
		time.Sleep(20 * time.Second) // two heartbeats; the second finds the lease lost
		synctest.Wait()
		want := "Register, Register, Heartbeat lease-1, Heartbeat lease-1, Register"
		if got := reg.log(); got != want {
			t.Fatalf("calls %s, want %s", got, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := reg.log(); got != want+", Deregister lease-2" {
			t.Fatalf("calls at shutdown %s", got)
		}
		if w.Registered() {
			t.Error("still registered after shutdown")
		}
		for _, msg := range []string{"Registration failed", "Lease lost, registering again", "Deregistered from the service registry"} {
			if !strings.Contains(logs.String(), msg) {
				t.Errorf("no %q in logs:\n%s", msg, logs.String())
			}
		}
	})
}
