package registry

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	workerA = flow.WorkerID
	workerB = spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/other-worker")
	t0      = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

func TestLeases(t *testing.T) {
	ttl := 30 * time.Second
	for _, tt := range []struct {
		name string
		run  func(*leases) error
		want []string // addresses Discover("sha256") returns afterwards, at t0+1s
		err  error
		msg  string
	}{
		{name: "ok/register", run: func(l *leases) error {
			_, _, err := l.register(workerA, "10.0.0.1:7000", []string{"wordcount", "sha256", "sha256"}, t0)
			return err
		}, want: []string{"10.0.0.1:7000"}},
		{name: "ok/oldest first", run: func(l *leases) error {
			for _, a := range []string{"10.0.0.2:7000", "10.0.0.1:7000", "10.0.0.3:7000"} {
				if _, _, err := l.register(workerA, a, []string{"sha256"}, t0); err != nil {
					return err
				}
			}
			return nil
		}, want: []string{"10.0.0.2:7000", "10.0.0.1:7000", "10.0.0.3:7000"}},
		{name: "ok/other capability not discovered", run: func(l *leases) error {
			_, _, err := l.register(workerA, "10.0.0.1:7000", []string{"wordcount"}, t0)
			return err
		}},
		{name: "ok/same owner and address replaces", run: func(l *leases) error {
			first, _, _ := l.register(workerA, "10.0.0.1:7000", []string{"sha256"}, t0)
			_, replaced, err := l.register(workerA, "10.0.0.1:7000", []string{"sha256"}, t0)
			if replaced != first.InstanceID {
				return errors.New("not replaced")
			}
			return err
		}, want: []string{"10.0.0.1:7000"}},
		{name: "ok/other owner same address kept", run: func(l *leases) error {
			_, _, _ = l.register(workerA, "10.0.0.1:7000", []string{"sha256"}, t0)
			_, replaced, err := l.register(workerB, "10.0.0.1:7000", []string{"sha256"}, t0)
			if replaced != "" {
				return errors.New("replaced")
			}
			return err
		}, want: []string{"10.0.0.1:7000", "10.0.0.1:7000"}},
		{name: "ok/heartbeat extends", run: func(l *leases) error {
			lease, _, _ := l.register(workerA, "10.0.0.1:7000", []string{"sha256"}, t0.Add(-ttl+time.Second))
			next, err := l.heartbeat(workerA, lease.InstanceID, t0)
			if err == nil && (!next.ExpiresAt.Equal(t0.Add(ttl)) || next.HeartbeatInterval != ttl/3) {
				return errors.New("lease not renewed for ttl")
			}
			return err
		}, want: []string{"10.0.0.1:7000"}},
		{name: "ok/expired is invisible", run: func(l *leases) error {
			_, _, err := l.register(workerA, "10.0.0.1:7000", []string{"sha256"}, t0.Add(-ttl))
			return err
		}},
		{name: "ok/deregister", run: func(l *leases) error {
			lease, _, _ := l.register(workerA, "10.0.0.1:7000", []string{"sha256"}, t0)
			_, err := l.deregister(workerA, lease.InstanceID, t0)
			return err
		}},
		{name: "fail/heartbeat after expiry", err: ErrNotFound, run: func(l *leases) error {
			lease, _, _ := l.register(workerA, "10.0.0.1:7000", []string{"sha256"}, t0.Add(-ttl))
			_, err := l.heartbeat(workerA, lease.InstanceID, t0)
			return err
		}},
		{name: "fail/heartbeat unknown", err: ErrNotFound, run: func(l *leases) error {
			_, err := l.heartbeat(workerA, "nope", t0)
			return err
		}},
		{name: "fail/deregister by other owner", err: ErrNotOwner, run: func(l *leases) error {
			lease, _, _ := l.register(workerA, "10.0.0.1:7000", []string{"sha256"}, t0)
			_, err := l.deregister(workerB, lease.InstanceID, t0)
			return err
		}, want: []string{"10.0.0.1:7000"}},
		{name: "fail/address without port", err: ErrInvalid, msg: "is not host:port", run: func(l *leases) error {
			_, _, err := l.register(workerA, "10.0.0.1", []string{"sha256"}, t0)
			return err
		}},
		{name: "fail/address port zero", err: ErrInvalid, msg: "is not host:port", run: func(l *leases) error {
			_, _, err := l.register(workerA, "10.0.0.1:0", []string{"sha256"}, t0)
			return err
		}},
		{name: "fail/no capabilities", err: ErrInvalid, msg: "no capabilities", run: func(l *leases) error {
			_, _, err := l.register(workerA, "10.0.0.1:7000", nil, t0)
			return err
		}},
		{name: "fail/bad capability", err: ErrInvalid, msg: "capability", run: func(l *leases) error {
			_, _, err := l.register(workerA, "10.0.0.1:7000", []string{"sha256", "Rm -rf"}, t0)
			return err
		}},
		{name: "fail/full", err: ErrFull, run: func(l *leases) error {
			for i := range 4 {
				if _, _, err := l.register(workerA, "10.0.0.1:700"+string(rune('0'+i)), []string{"sha256"}, t0); err != nil {
					return err
				}
			}
			return nil
		}, want: []string{"10.0.0.1:7000", "10.0.0.1:7001", "10.0.0.1:7002"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLeases(ttl, 3)
			err := tt.run(l)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("got error %v, want %v containing %q", err, tt.err, tt.msg)
			}
			var got []string
			for _, in := range l.discover("sha256", t0.Add(time.Second)) {
				got = append(got, in.Address)
				if in.SPIFFEID == "" || in.InstanceID == "" {
					t.Errorf("incomplete instance %+v", in)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("discover = %v, want %v", got, tt.want)
			}
		})
	}
}

// expireLeases removes a lease once its TTL passed without heartbeat, and
// logs it.
func TestExpireLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, logs := spiffegrpctest.NewLogger(t)
		r, err := New(Config{Listener: fakeListener{}, WorkloadAPIAddr: "unix:///nowhere", LeaseTTL: 30 * time.Second, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		lease, _, err := r.leases.register(workerA, "10.0.0.1:7000", []string{"sha256"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.expireLeases(ctx) }()

		time.Sleep(29 * time.Second)
		synctest.Wait()
		if n := r.leases.size(); n != 1 || strings.Contains(logs.String(), "expired") {
			t.Fatalf("lease gone before its TTL (%d left)", n)
		}
		time.Sleep(16 * time.Second) // past the TTL and the next sweep (every 15s)
		synctest.Wait()
		if n := r.leases.size(); n != 0 {
			t.Fatalf("%d leases left after expiry", n)
		}
		if !strings.Contains(logs.String(), `"msg":"Worker lease expired"`) || !strings.Contains(logs.String(), lease.InstanceID) {
			t.Errorf("expiry not logged:\n%s", logs.String())
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// fakeListener satisfies Config.Listener for tests that never serve.
type fakeListener struct{}

func (fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (fakeListener) Close() error              { return nil }
func (fakeListener) Addr() net.Addr            { return &net.TCPAddr{} }

// size counts leases, expired or not.
func (t *leases) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}
