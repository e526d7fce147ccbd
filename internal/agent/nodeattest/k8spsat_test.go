package nodeattest_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/agent/nodeattest"
)

func TestK8sPSAT(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "spire-agent")
	write := func(s string) {
		if err := os.WriteFile(tokenPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	a, err := nodeattest.NewK8sPSAT(nodeattest.K8sPSATConfig{Cluster: "neural-hive", TokenPath: tokenPath})
	if err != nil {
		t.Fatal(err)
	}
	if a.Type() != "k8s_psat" {
		t.Fatalf("Type() = %q", a.Type())
	}

	t.Run("ok/payload is SPIRE's JSON", func(t *testing.T) {
		write("eyJhbGciOiJSUzI1NiJ9.e30.sig")
		p, err := a.Payload(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(p) != `{"cluster":"neural-hive","token":"eyJhbGciOiJSUzI1NiJ9.e30.sig"}` {
			t.Fatalf("payload %s", p)
		}
	})

	t.Run("ok/rotated token is read again", func(t *testing.T) {
		write("second.token.value\n")
		p, err := a.Payload(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		if err := json.Unmarshal(p, &got); err != nil || got["token"] != "second.token.value" {
			t.Fatalf("payload %s (%v)", p, err)
		}
	})

	t.Run("fail/empty token", func(t *testing.T) {
		write("\n")
		if _, err := a.Payload(ctx); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("fail/missing token file", func(t *testing.T) {
		b, _ := nodeattest.NewK8sPSAT(nodeattest.K8sPSATConfig{Cluster: "c", TokenPath: filepath.Join(dir, "none")})
		if _, err := b.Payload(ctx); err == nil || !strings.Contains(err.Error(), "unable to load token from") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("fail/no challenge expected", func(t *testing.T) {
		if _, err := a.Respond(ctx, []byte("x")); err == nil {
			t.Fatal("k8s_psat answered a challenge")
		}
	})

	t.Run("fail/missing cluster", func(t *testing.T) {
		if _, err := nodeattest.NewK8sPSAT(nodeattest.K8sPSATConfig{}); err == nil || !strings.Contains(err.Error(), "cluster") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("ok/default token path", func(t *testing.T) {
		b, _ := nodeattest.NewK8sPSAT(nodeattest.K8sPSATConfig{Cluster: "c"})
		if _, err := b.Payload(ctx); err == nil || !strings.Contains(err.Error(), nodeattest.DefaultK8sPSATTokenPath) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("ok/attest sends type and payload", func(t *testing.T) {
		write("third.token")
		srv := &fakeAgentServer{result: &agentv1.AttestAgentResponse_Result{Svid: &types.X509SVID{CertChain: testChain(t)}, Reattestable: true}}
		res, err := nodeattest.Attest(ctx, serve(t, srv), a, []byte("csr"))
		if err != nil {
			t.Fatal(err)
		}
		if srv.gotType != "k8s_psat" || string(srv.gotPayload) != `{"cluster":"neural-hive","token":"third.token"}` || !res.Reattestable {
			t.Fatalf("server got %q %s; result %+v", srv.gotType, srv.gotPayload, res)
		}
	})
}
