package cli

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// workloadClient is go-spiffe's generated Workload API client plus the
// per-call timeout of the api commands. The raw client is used (rather than
// go-spiffe's workloadapi.Client) because SPIRE prints the responses as
// received: raw bundles, JWKS bytes and claims.
type workloadClient struct {
	api     workload.SpiffeWorkloadAPIClient
	timeout time.Duration
}

// callContext returns the context of one Workload API call: it carries the
// security header the Workload API requires and, if set, the timeout.
func (c *workloadClient) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
}

// apiCommand is the shape shared by `api fetch x509`, `api fetch jwt` and
// `api validate jwt`: a flag set with -socketPath and -timeout plus the
// command's own flags, a connection to the Workload API, and an action whose
// error is printed bare on stderr (exit 1).
type apiCommand struct {
	e          *env
	fs         *flag.FlagSet
	summary    string
	socketPath string
	timeout    durationFlag
	action     func(ctx context.Context, c *workloadClient) error
}

// newAPICommand builds an apiCommand; define registers the command's own
// flags and returns its action.
func newAPICommand(e *env, name, summary string, define func(fs *flag.FlagSet) func(context.Context, *workloadClient) error) *apiCommand {
	c := &apiCommand{e: e, summary: summary, timeout: durationFlag(defaultTimeout)}
	c.fs = newFlagSet(name, e.stderr)
	c.fs.Var(&c.timeout, "timeout", "How long to wait for each answer of the Workload API")
	c.fs.StringVar(&c.socketPath, "socketPath", defaultSocketPath, "Unix socket of the agent's Workload API")
	c.action = define(c.fs)
	return c
}

func (c *apiCommand) synopsis() string { return c.summary }

func (c *apiCommand) help() string {
	printUsage(c.fs)
	return ""
}

func (c *apiCommand) run(ctx context.Context, args []string) int {
	if err := c.fs.Parse(args); err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	target, err := socketTarget(c.socketPath)
	if err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(plainDeadlineUnary),
		grpc.WithStreamInterceptor(plainDeadlineStream))
	if err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	defer conn.Close()
	client := &workloadClient{api: workload.NewSpiffeWorkloadAPIClient(conn), timeout: time.Duration(c.timeout)}
	if err := c.action(ctx, client); err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	return exitOK
}

// plainDeadline reports a call that ran out of its -timeout the same way
// whichever phase it was in, as SPIRE's output shows it ("rpc error: code =
// DeadlineExceeded desc = context deadline exceeded"): gRPC words it
// differently when the deadline passes while connecting ("... while waiting
// for connections to become ready") or when the server ends the stream first
// ("stream terminated by RST_STREAM ...").
func plainDeadline(ctx context.Context, err error) error {
	if _, timed := ctx.Deadline(); timed && status.Code(err) == codes.DeadlineExceeded {
		return status.FromContextError(context.DeadlineExceeded).Err()
	}
	return err
}

func plainDeadlineUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return plainDeadline(ctx, invoker(ctx, method, req, reply, cc, opts...))
}

func plainDeadlineStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	stream, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, plainDeadline(ctx, err)
	}
	return plainDeadlineClientStream{ClientStream: stream, ctx: ctx}, nil
}

// plainDeadlineClientStream applies plainDeadline to received errors: the
// server may end the stream first when the deadline passes.
type plainDeadlineClientStream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s plainDeadlineClientStream) RecvMsg(m any) error {
	return plainDeadline(s.ctx, s.ClientStream.RecvMsg(m))
}

// printJSON prints protobuf responses the way SPIRE's CLI does: each message
// in protobuf JSON with proto field names and unpopulated fields, re-encoded
// through a Go map (so keys are sorted and null values dropped); one message
// prints as an object, several as an array; one line, newline-terminated.
func printJSON(w io.Writer, msgs ...proto.Message) error {
	marshal := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
	values := make([]any, 0, len(msgs))
	for _, msg := range msgs {
		raw, err := marshal.Marshal(msg)
		if err != nil {
			return err
		}
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		values = append(values, dropNulls(v))
	}
	var out any = values
	if len(values) == 1 {
		out = values[0]
	}
	return json.NewEncoder(w).Encode(out)
}

// dropNulls removes null values from JSON objects and arrays, recursively.
func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, item := range v {
			if item == nil {
				delete(v, k)
				continue
			}
			v[k] = dropNulls(item)
		}
		return v
	case []any:
		kept := make([]any, 0, len(v))
		for _, item := range v {
			if item != nil {
				kept = append(kept, dropNulls(item))
			}
		}
		return kept
	default:
		return v
	}
}
