// Package push is the wire binding of hive-identity's push extension
// (proto/hive/push/v1/push.proto): the server streams "revision N" to each
// connected agent whenever that agent's authorized set or a bundle changes.
// Extension: SPIRE has no such RPC; against a SPIRE server the agent gets
// Unimplemented and falls back to polling.
package push

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServiceName is the fully qualified gRPC service name.
const ServiceName = "hive.push.v1.Push"

// WatchMethod is the full method name of Watch.
const WatchMethod = "/" + ServiceName + "/Watch"

// Server is implemented by the server side of the extension.
type Server interface {
	// Watch sends the current revision at once, then one message per change
	// that concerns the calling agent, until ctx ends or the agent is refused.
	Watch(ctx context.Context, send func(revision int64) error) error
}

// Register registers srv on s.
func Register(s grpc.ServiceRegistrar, srv Server) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: ServiceName,
		HandlerType: (*Server)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    "Watch",
			ServerStreams: true,
			Handler: func(impl any, stream grpc.ServerStream) error {
				if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
					return err
				}
				return impl.(Server).Watch(stream.Context(), func(rev int64) error {
					return stream.SendMsg(wrapperspb.Int64(rev))
				})
			},
		}},
		Metadata: "hive/push/v1/push.proto",
	}, srv)
}

// Watch opens the stream on conn and calls onRevision for every message until
// the stream ends; it returns the stream's error (io.EOF on a clean end, a
// status error otherwise; codes.Unimplemented from a server without the extension).
func Watch(ctx context.Context, conn grpc.ClientConnInterface, onRevision func(int64)) error {
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}, WatchMethod)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(&emptypb.Empty{}); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	for {
		msg := new(wrapperspb.Int64Value)
		if err := stream.RecvMsg(msg); err != nil {
			return err
		}
		onRevision(msg.GetValue())
	}
}
