package spiffegrpctest

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Full method names of the WhoAmI test service.
const (
	MethodWho       = "/spiffegrpctest.WhoAmI/Who"
	MethodWhoStream = "/spiffegrpctest.WhoAmI/WhoStream"
)

// RegisterWhoAmI registers on s a test service whose unary Who and
// server-streaming WhoStream methods answer with who(ctx), typically the
// caller's authenticated SPIFFE ID.
func RegisterWhoAmI(s grpc.ServiceRegistrar, who func(context.Context) string) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "spiffegrpctest.WhoAmI",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Who",
			Handler: func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, _ any) (any, error) { return wrapperspb.String(who(ctx)), nil }
				if interceptor == nil {
					return h(ctx, in)
				}
				return interceptor(ctx, in, &grpc.UnaryServerInfo{FullMethod: MethodWho}, h)
			},
		}},
		Streams: []grpc.StreamDesc{{
			StreamName:    "WhoStream",
			ServerStreams: true,
			Handler: func(_ any, stream grpc.ServerStream) error {
				if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
					return err
				}
				return stream.SendMsg(wrapperspb.String(who(stream.Context())))
			},
		}},
	}, struct{}{})
}

// CallWho calls the unary Who method and returns its answer.
func CallWho(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := cc.Invoke(ctx, MethodWho, new(emptypb.Empty), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// CallWhoStream calls the streaming WhoStream method and returns its answer.
func CallWhoStream(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "WhoStream", ServerStreams: true}, MethodWhoStream, opts...)
	if err != nil {
		return "", err
	}
	if err := stream.SendMsg(new(emptypb.Empty)); err != nil {
		return "", err
	}
	if err := stream.CloseSend(); err != nil {
		return "", err
	}
	out := new(wrapperspb.StringValue)
	if err := stream.RecvMsg(out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// LogBuffer collects JSON log lines; it is safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// NewLogger returns a debug-level JSON logger writing into a LogBuffer; on
// failure the test log shows what was captured.
func NewLogger(tb testing.TB) (*slog.Logger, *LogBuffer) {
	tb.Helper()
	b := &LogBuffer{}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("captured logs:\n%s", b.String())
		}
	})
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}
