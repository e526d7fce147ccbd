package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// responder answers one RPC given its request.
type responder func(req proto.Message) (proto.Message, error)

// fakeAPI is an in-test server of every unary RPC of the SDK services (and
// gRPC health) on a real unix socket. Each RPC answers with the responder set
// for its method name ("BatchCreateEntry"), Unimplemented otherwise, and every
// request is recorded.
type fakeAPI struct {
	outputs map[string]protoreflect.MessageType // response type per method

	mu       sync.Mutex
	answers  map[string]responder
	requests map[string][]proto.Message
}

// startFakeAPI serves on dir/s/api.sock until the test ends.
func startFakeAPI(tb testing.TB, dir string) *fakeAPI {
	tb.Helper()
	f := &fakeAPI{
		outputs:  map[string]protoreflect.MessageType{},
		answers:  map[string]responder{},
		requests: map[string][]proto.Message{},
	}
	if err := os.MkdirAll(filepath.Join(dir, "s"), 0o700); err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("unix", filepath.Join(dir, "s", "api.sock"))
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	for _, file := range []protoreflect.FileDescriptor{
		agentv1.File_spire_api_server_agent_v1_agent_proto,
		bundlev1.File_spire_api_server_bundle_v1_bundle_proto,
		entryv1.File_spire_api_server_entry_v1_entry_proto,
		localauthorityv1.File_spire_api_server_localauthority_v1_localauthority_proto,
		loggerv1.File_spire_api_server_logger_v1_logger_proto,
		svidv1.File_spire_api_server_svid_v1_svid_proto,
		trustdomainv1.File_spire_api_server_trustdomain_v1_trustdomain_proto,
		grpc_health_v1.File_grpc_health_v1_health_proto,
	} {
		for i := range file.Services().Len() {
			srv.RegisterService(f.serviceDesc(tb, file.Services().Get(i)), f)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	tb.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return f
}

func (f *fakeAPI) serviceDesc(tb testing.TB, sd protoreflect.ServiceDescriptor) *grpc.ServiceDesc {
	desc := &grpc.ServiceDesc{ServiceName: string(sd.FullName()), HandlerType: (*any)(nil)}
	for i := range sd.Methods().Len() {
		md := sd.Methods().Get(i)
		if md.IsStreamingClient() || md.IsStreamingServer() {
			continue
		}
		in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			tb.Fatal(err)
		}
		out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
		if err != nil {
			tb.Fatal(err)
		}
		name := string(md.Name())
		f.outputs[name] = out
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: name,
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				req := in.New().Interface()
				if err := dec(req); err != nil {
					return nil, err
				}
				return f.handle(name, req)
			},
		})
	}
	return desc
}

func (f *fakeAPI) handle(method string, req proto.Message) (proto.Message, error) {
	f.mu.Lock()
	f.requests[method] = append(f.requests[method], req)
	answer := f.answers[method]
	f.mu.Unlock()
	if answer == nil {
		return nil, status.Errorf(codes.Unimplemented, "fake: no answer for %s", method)
	}
	return answer(req)
}

// on sets the answer of method: a proto.Message, an error, or a responder.
func (f *fakeAPI) on(method string, answer any) {
	var r responder
	switch a := answer.(type) {
	case responder:
		r = a
	case func(proto.Message) (proto.Message, error):
		r = a
	case proto.Message:
		r = func(proto.Message) (proto.Message, error) { return a, nil }
	case error:
		r = func(proto.Message) (proto.Message, error) { return nil, a }
	default:
		panic(fmt.Sprintf("fake: bad answer %T", answer))
	}
	f.mu.Lock()
	f.answers[method] = r
	f.mu.Unlock()
}

// sent returns the requests received for method.
func (f *fakeAPI) sent(method string) []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.Message(nil), f.requests[method]...)
}

// decode parses SPIRE's -output json text as the response of method.
func (f *fakeAPI) decode(tb testing.TB, method, text string) proto.Message {
	tb.Helper()
	mt, ok := f.outputs[method]
	if !ok {
		tb.Fatalf("fake: unknown method %s", method)
	}
	m := mt.New().Interface()
	if err := protojson.Unmarshal([]byte(text), m); err != nil {
		tb.Fatalf("decode %s response: %v", method, err)
	}
	return m
}
