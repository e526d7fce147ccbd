package cli

import (
	"context"
	"flag"
	"net"
	"strings"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// defaultSocketPath is SPIRE's default admin API socket.
const defaultSocketPath = "/tmp/spire-server/private/api.sock"

// client is a connection to the server API socket.
type client struct {
	conn *grpc.ClientConn
}

// dial prepares a connection to the unix socket at path; like SPIRE's CLI it
// connects lazily, so a missing socket surfaces as Unavailable on the first call.
func dial(path string) (*client, error) {
	if path == "" {
		path = defaultSocketPath
	}
	// The target keeps grpc's unix resolver from being bypassed by DNS; the
	// dialer gets the resolved "unix://..." address back and strips the scheme,
	// which gives the same "dial unix ///path" error text as SPIRE.
	conn, err := grpc.NewClient("unix:"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", strings.TrimPrefix(addr, "unix:"))
		}))
	if err != nil {
		return nil, err
	}
	return &client{conn: conn}, nil
}

func (c *client) close() { _ = c.conn.Close() }

func (c *client) agent() agentv1.AgentClient    { return agentv1.NewAgentClient(c.conn) }
func (c *client) bundle() bundlev1.BundleClient { return bundlev1.NewBundleClient(c.conn) }
func (c *client) entry() entryv1.EntryClient    { return entryv1.NewEntryClient(c.conn) }
func (c *client) svid() svidv1.SVIDClient       { return svidv1.NewSVIDClient(c.conn) }
func (c *client) logger() loggerv1.LoggerClient { return loggerv1.NewLoggerClient(c.conn) }
func (c *client) health() grpc_health_v1.HealthClient {
	return grpc_health_v1.NewHealthClient(c.conn)
}
func (c *client) localAuthority() localauthorityv1.LocalAuthorityClient {
	return localauthorityv1.NewLocalAuthorityClient(c.conn)
}
func (c *client) trustDomain() trustdomainv1.TrustDomainClient {
	return trustdomainv1.NewTrustDomainClient(c.conn)
}

// apiAction is the part of an API command that runs after flag parsing.
type apiAction func(ctx context.Context, c *client) error

// apiSetup turns the flag registration of an API command into a command
// setup: it adds -socketPath, and its action dials the socket, runs, and
// prints "Error: <err>" to stderr (exit 1) when the command fails.
func apiSetup(flags func(fs *flag.FlagSet, e *env) apiAction) func(fs *flag.FlagSet, e *env) func(ctx context.Context) int {
	return func(fs *flag.FlagSet, e *env) func(ctx context.Context) int {
		socketPath := fs.String("socketPath", defaultSocketPath, "Path of the server's admin API unix socket")
		act := flags(fs, e)
		return func(ctx context.Context) int {
			c, err := dial(*socketPath)
			if err == nil {
				defer c.close()
				err = act(ctx, c)
			}
			if err != nil {
				_ = e.errorf("Error: %s\n", err)
				return 1
			}
			return 0
		}
	}
}
