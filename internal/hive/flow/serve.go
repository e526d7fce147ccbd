package flow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// stopGrace bounds how long Serve lets calls in flight finish.
const stopGrace = 5 * time.Second

// DefaultMaxConnectionAge is how long a Flow C server keeps a client
// connection before asking the client to reconnect (GOAWAY; calls in
// flight finish, new calls go to the new connection).
const DefaultMaxConnectionAge = 5 * time.Minute

// ServerOptions are the options every Flow C server needs: the JSON codec
// (ServerCodec) and a maximum connection age, maxAge (0:
// DefaultMaxConnectionAge). The age matters for mTLS: the server checks the
// client's X509-SVID on every call, so a connection must not outlive the
// SVID the client made it with. Clients handshake again with their current
// SVID, which the agent rotates at half its life; keep maxAge well under
// half the X509-SVID TTL (SPIRE's own server recycles connections every 3
// minutes).
func ServerOptions(maxAge time.Duration) []grpc.ServerOption {
	if maxAge <= 0 {
		maxAge = DefaultMaxConnectionAge
	}
	return []grpc.ServerOption{
		ServerCodec(),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: maxAge, MaxConnectionAgeGrace: stopGrace}),
	}
}

// Serve serves srv on lis until ctx is done, then stops it gracefully
// (calls in flight get up to 5s) and returns nil. It returns an error if
// serving fails. It closes lis.
func Serve(ctx context.Context, srv *grpc.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("flow: serve: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("flow: serve: %w", err)
	}
	return nil
}
