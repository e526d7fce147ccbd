package workloadapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestSecurityHeader_WE02_WE03_T12: WE-02, WE-03, T12. Every SpiffeWorkloadAPI call needs
// exactly one "workload.spiffe.io" value "true"; otherwise InvalidArgument
// "security header missing from request", before any attestation or
// signing. Other services on the socket (health) do not need it.
func TestSecurityHeader_WE02_WE03_T12(t *testing.T) {
	e := newEnv(t)
	e.addIdentity(entry("e1", "spiffe://neural-hive.local/w", mySelector()))
	c := e.client()
	tok := e.ca.JWTSVID(t, e.cache.Entries()[0].SPIFFEID, []string{"x"}, 5*time.Minute)

	for _, tt := range []struct {
		name   string
		values []string // nil: header absent
		ok     bool
	}{
		{name: "ok/true", values: []string{"true"}, ok: true},
		{name: "fail/missing"},
		{name: "fail/TRUE", values: []string{"TRUE"}},
		{name: "fail/True", values: []string{"True"}},
		{name: "fail/false", values: []string{"false"}},
		{name: "fail/empty", values: []string{""}},
		{name: "fail/duplicated", values: []string{"true", "true"}},
		{name: "fail/duplicated mixed", values: []string{"true", "false"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			for _, v := range tt.values {
				ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", v)
			}
			calls := map[string]func(context.Context) error{
				"FetchX509SVID": func(ctx context.Context) error {
					s, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
					if err == nil {
						_, err = s.Recv()
					}
					return err
				},
				"FetchX509Bundles": func(ctx context.Context) error {
					s, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
					if err == nil {
						_, err = s.Recv()
					}
					return err
				},
				"FetchJWTBundles": func(ctx context.Context) error {
					s, err := c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
					if err == nil {
						_, err = s.Recv()
					}
					return err
				},
				"FetchJWTSVID": func(ctx context.Context) error {
					_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"x"}})
					return err
				},
				"ValidateJWTSVID": func(ctx context.Context) error {
					_, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "x", Svid: tok})
					return err
				},
			}
			signed := e.signer.Calls()
			for name, call := range calls {
				err := call(ctx)
				if tt.ok {
					if err != nil {
						t.Errorf("%s: %v", name, err)
					}
					continue
				}
				if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "security header missing from request" {
					t.Errorf("%s: error = %v, want InvalidArgument \"security header missing from request\"", name, err)
				}
			}
			if !tt.ok && e.signer.Calls() != signed {
				t.Error("a refused call signed a JWT-SVID")
			}
		})
	}

	// Health needs no header (spire-agent healthcheck does not send it).
	resp, err := grpc_health_v1.NewHealthClient(e.conn()).Check(testCtx(t), &grpc_health_v1.HealthCheckRequest{})
	if err != nil || resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health without header: %v %v", resp, err)
	}
}
