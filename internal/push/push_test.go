package push

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type revisions []int64

func (r revisions) Watch(ctx context.Context, send func(int64) error) error {
	for _, rev := range r {
		if err := send(rev); err != nil {
			return err
		}
	}
	return status.Error(codes.PermissionDenied, "agent is banned")
}

func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestWatch(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { Register(s, revisions{3, 4, 9}) })
	var got []int64
	err := Watch(context.Background(), conn, func(r int64) { got = append(got, r) })
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("stream end: %v", err)
	}
	if len(got) != 3 || got[0] != 3 || got[2] != 9 {
		t.Fatalf("revisions %v", got)
	}
}

func TestWatch_ServerWithoutExtension(t *testing.T) {
	conn := serve(t, func(*grpc.Server) {})
	err := Watch(context.Background(), conn, func(int64) { t.Fatal("no revision expected") })
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("want Unimplemented so the agent falls back to polling, got %v", err)
	}
}
