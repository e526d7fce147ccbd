package nodeattest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/agent/nodeattest"
)

// fakeAgentServer answers AttestAgent with a script: the challenges to send
// (each must be answered with "re:"+challenge), then the result or err.
type fakeAgentServer struct {
	agentv1.UnimplementedAgentServer
	challenges [][]byte
	result     *agentv1.AttestAgentResponse_Result
	err        error

	gotType    string
	gotPayload []byte
	gotCSR     []byte
}

func (s *fakeAgentServer) AttestAgent(stream agentv1.Agent_AttestAgentServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	params := req.GetParams()
	if params == nil {
		return status.Error(codes.InvalidArgument, "missing params")
	}
	s.gotType = params.GetData().GetType()
	s.gotPayload = params.GetData().GetPayload()
	s.gotCSR = params.GetParams().GetCsr()
	for _, ch := range s.challenges {
		if err := stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Challenge{Challenge: ch}}); err != nil {
			return err
		}
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		if want := append([]byte("re:"), ch...); !bytes.Equal(req.GetChallengeResponse(), want) {
			return status.Errorf(codes.PermissionDenied, "bad challenge response %q", req.GetChallengeResponse())
		}
	}
	if s.err != nil {
		return s.err
	}
	return stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result_{Result: s.result}})
}

func serve(t *testing.T, srv agentv1.AgentServer) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	agentv1.RegisterAgentServer(s, srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(l) }()
	t.Cleanup(func() { s.Stop(); <-done })
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// echoAttestor answers each challenge with "re:"+challenge.
type echoAttestor struct{}

func (echoAttestor) Type() string                            { return "echo" }
func (echoAttestor) Payload(context.Context) ([]byte, error) { return []byte("hello"), nil }
func (echoAttestor) Respond(_ context.Context, c []byte) ([]byte, error) {
	return append([]byte("re:"), c...), nil
}

func testChain(t *testing.T) [][]byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "agent"},
		NotBefore:    time.Now(),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{der}
}

func TestAttest(t *testing.T) {
	chain := testChain(t)
	csr := []byte("csr-bytes")
	for _, tt := range []struct {
		name         string
		attestor     nodeattest.Attestor
		srv          *fakeAgentServer
		csr          []byte
		wantType     string
		wantPayload  string
		reattestable bool
		code         codes.Code
		err          string
	}{
		{
			name:        "ok/join_token",
			attestor:    nodeattest.NewJoinToken("tok-123"),
			srv:         &fakeAgentServer{result: &agentv1.AttestAgentResponse_Result{Svid: &types.X509SVID{CertChain: chain}}},
			wantType:    "join_token",
			wantPayload: "tok-123",
		},
		{
			name:         "ok/challenges",
			attestor:     echoAttestor{},
			srv:          &fakeAgentServer{challenges: [][]byte{[]byte("c1"), []byte("c2")}, result: &agentv1.AttestAgentResponse_Result{Svid: &types.X509SVID{CertChain: chain}, Reattestable: true}},
			wantType:     "echo",
			wantPayload:  "hello",
			reattestable: true,
		},
		{
			name:     "fail/token refused",
			attestor: nodeattest.NewJoinToken("used"),
			srv:      &fakeAgentServer{err: status.Error(codes.PermissionDenied, "failed to attest: join token does not exist or has already been used")},
			code:     codes.PermissionDenied,
			err:      "join token does not exist or has already been used",
		},
		{
			name:     "fail/join_token challenged",
			attestor: nodeattest.NewJoinToken("tok"),
			srv:      &fakeAgentServer{challenges: [][]byte{[]byte("c1")}},
			err:      "join_token attestation does not expect a challenge",
		},
		{
			name:     "fail/empty token",
			attestor: nodeattest.NewJoinToken(""),
			srv:      &fakeAgentServer{},
			err:      "join token is empty",
		},
		{
			name:     "fail/no SVID in result",
			attestor: nodeattest.NewJoinToken("tok"),
			srv:      &fakeAgentServer{result: &agentv1.AttestAgentResponse_Result{}},
			err:      "attestation result has no SVID",
		},
		{
			name:     "fail/bad certificate",
			attestor: nodeattest.NewJoinToken("tok"),
			srv:      &fakeAgentServer{result: &agentv1.AttestAgentResponse_Result{Svid: &types.X509SVID{CertChain: [][]byte{[]byte("junk")}}}},
			err:      "invalid SVID certificate",
		},
		{
			name:     "fail/no CSR",
			attestor: nodeattest.NewJoinToken("tok"),
			srv:      &fakeAgentServer{},
			csr:      []byte{},
			err:      "CSR is required",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := serve(t, tt.srv)
			c := csr
			if tt.csr != nil {
				c = tt.csr
			}
			res, err := nodeattest.Attest(t.Context(), conn, tt.attestor, c)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "nodeattest: ") {
					t.Fatalf("err = %v, want containing %q", err, tt.err)
				}
				if tt.code != codes.OK && status.Code(err) != tt.code {
					t.Fatalf("code = %v, want %v", status.Code(err), tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.srv.gotType != tt.wantType || string(tt.srv.gotPayload) != tt.wantPayload || !bytes.Equal(tt.srv.gotCSR, csr) {
				t.Fatalf("server got type %q payload %q csr %q", tt.srv.gotType, tt.srv.gotPayload, tt.srv.gotCSR)
			}
			if len(res.SVID) != 1 || !bytes.Equal(res.SVID[0].Raw, chain[0]) || res.Reattestable != tt.reattestable {
				t.Fatalf("result = %+v", res)
			}
		})
	}
}
