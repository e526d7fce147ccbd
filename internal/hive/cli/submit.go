package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/neural-hive/hive-identity/internal/hive/workload"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// SubmitResult is one line of `flowc-submit -output json`: the
// orchestrator's response plus the round trip the client measured.
type SubmitResult struct {
	flow.SubmitResponse
	RoundTrip time.Duration `json:"round_trip_ns"`
}

// RunSubmit runs flowc-submit: it submits -n Flow C tasks to the
// orchestrator, authenticated by a JWT-SVID for the orchestrator's SPIFFE ID
// fetched from the Workload API (or the token in -token), over TLS verifying
// the orchestrator's X509-SVID. It prints each result and returns 0 only if
// every task succeeded.
func RunSubmit(ctx context.Context, args []string, getenv Getenv, stdout, stderr io.Writer) int {
	const name = "flowc-submit"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := DefaultSocketPath
	if env := getenv("SPIFFE_ENDPOINT_SOCKET"); env != "" {
		def = env
	}
	socketPath := fs.String("socketPath", def, "Path of the SPIRE agent's Workload API socket (default from SPIFFE_ENDPOINT_SOCKET when set)")
	ownID := fs.String("spiffeID", flow.SubmitterID.String(), "SPIFFE ID to submit as, picked when the agent issues several")
	orchAddr := fs.String("orchestrator", "127.0.0.1:50052", "Address of the orchestrator-dynamic")
	orchID := fs.String("orchestratorID", flow.OrchestratorID.String(), "SPIFFE ID the orchestrator must present; the JWT-SVID audience")
	capability := fs.String("capability", "sha256", "Task kind: sha256 or wordcount")
	payload := fs.String("payload", "hello, neural hive", "Task payload")
	n := fs.Int("n", 1, "Number of tasks to submit, one after the other")
	tokenFile := fs.String("token", "", "File with a JWT-SVID to send instead of fetching one (e.g. from `spire-server jwt mint -write`)")
	output := fs.String("output", "pretty", "Output format: pretty or json")
	timeout := fs.Duration("timeout", 30*time.Second, "Bound on getting an identity and on each task")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, name+": "+format+"\n", args...)
		return 1
	}
	if *n < 1 || (*output != "pretty" && *output != "json") {
		return fail("-n must be at least 1 and -output pretty or json")
	}
	oid, err := spiffeid.FromString(*orchID)
	if err != nil {
		return fail("-orchestratorID: %v", err)
	}
	id, err := spiffeid.FromString(*ownID)
	if err != nil {
		return fail("-spiffeID: %v", err)
	}
	addr, err := workloadAddr(*socketPath)
	if err != nil {
		return fail("%v", err)
	}

	openCtx, cancel := context.WithTimeout(ctx, *timeout)
	src, err := workload.Open(openCtx, workload.Config{Addr: addr, ID: id, JWT: *tokenFile == ""})
	cancel()
	if err != nil {
		return fail("no identity from the Workload API at %s within %s (is there a registration entry for this program?): %v", addr, *timeout, err)
	}
	defer src.Close()

	var perRPC credentials.PerRPCCredentials
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fail("%v", err)
		}
		perRPC = staticToken(strings.TrimSpace(string(b)))
	} else {
		creds, err := spiffegrpc.NewJWTCredentials(src.JWT, oid.String())
		if err != nil {
			return fail("%v", err)
		}
		perRPC = creds
	}
	conn, err := grpc.NewClient(*orchAddr,
		grpc.WithTransportCredentials(grpccredentials.TLSClientCredentials(src.X509, tlsconfig.AuthorizeID(oid))),
		grpc.WithPerRPCCredentials(perRPC))
	if err != nil {
		return fail("%v", err)
	}
	defer conn.Close()
	client := flow.NewOrchestratorClient(conn)

	var rtts []time.Duration
	failed := 0
	for i := range *n {
		callCtx, cancel := context.WithTimeout(ctx, *timeout)
		start := time.Now()
		resp, err := client.Submit(callCtx, &flow.SubmitRequest{Capability: *capability, Payload: []byte(*payload)})
		rtt := time.Since(start)
		cancel()
		if err != nil {
			failed++
			st := status.Convert(err)
			fmt.Fprintf(stderr, "%s: task %d failed: %s: %s\n", name, i+1, st.Code(), st.Message())
			if ctx.Err() != nil {
				break
			}
			continue
		}
		rtts = append(rtts, rtt)
		res := SubmitResult{SubmitResponse: *resp, RoundTrip: rtt}
		if *output == "json" {
			b, _ := json.Marshal(res)
			fmt.Fprintln(stdout, string(b))
		} else if *n == 1 {
			printResult(stdout, *capability, len(*payload), oid, res)
		} else {
			fmt.Fprintf(stdout, "task %s  %s  %s  %s\n", res.TaskID, res.Worker.InstanceID, res.Output, ms(rtt))
		}
	}
	if *n > 1 && *output == "pretty" && len(rtts) > 0 {
		fmt.Fprintf(stdout, "%d tasks, %d failed; round trip p50 %s, p99 %s\n", *n, failed, ms(Percentile(rtts, 0.50)), ms(Percentile(rtts, 0.99)))
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func printResult(w io.Writer, capability string, size int, aud spiffeid.ID, r SubmitResult) {
	fmt.Fprintf(w, "Flow C task %s: %s of %d bytes\n", r.TaskID, capability, size)
	fmt.Fprintf(w, "  submitted by %s (JWT-SVID, audience %s)\n", r.Submitter, aud)
	fmt.Fprintf(w, "  C3 discover  %s -> worker %s at %s (%s)\n", ms(r.Discover), r.Worker.SPIFFEID, r.Worker.Address, r.Worker.InstanceID)
	fmt.Fprintf(w, "  dispatch     %s over mTLS\n", ms(r.Dispatch))
	fmt.Fprintf(w, "  output       %s\n", r.Output)
	fmt.Fprintf(w, "  round trip   %s\n", ms(r.RoundTrip))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// Percentile returns the q-quantile (0 < q <= 1) of ds by the nearest-rank
// method; ds is not modified.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// staticToken sends one given JWT-SVID on every call.
type staticToken string

func (t staticToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (staticToken) RequireTransportSecurity() bool { return true }
