// Package nodeattest is the agent side of node attestation: an Attestor
// produces the attestation data of one method (join_token; x509pop in
// x509pop.go) and answers the server's challenges, and Attest runs SPIRE's
// agent.v1 AttestAgent stream with it to obtain the agent X509-SVID.
//
// The package does not dial the server, keep keys or store the SVID: the
// caller (internal/agent/sync) opens the bootstrap TLS connection, makes the
// CSR and persists the result.
package nodeattest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
)

// maxChallenges bounds the challenge rounds of one attestation, so that a
// misbehaving server cannot keep the agent in the stream forever.
const maxChallenges = 16

// Attestor is one node attestation method. Implementations are files of
// this package, chosen by the agent's configuration.
type Attestor interface {
	// Type is the attestation type on the wire ("join_token", "x509pop"),
	// the name of the server's NodeAttestor.
	Type() string
	// Payload returns the attestation data sent in the first message.
	Payload(ctx context.Context) ([]byte, error)
	// Respond answers a challenge of the server. Methods without
	// challenges return an error.
	Respond(ctx context.Context, challenge []byte) ([]byte, error)
}

// Result is the outcome of a successful attestation.
type Result struct {
	// SVID is the agent X509-SVID chain, leaf first.
	SVID []*x509.Certificate
	// Reattestable says whether the server lets the agent attest again to
	// renew its SVID (instead of agent.v1 RenewAgent).
	Reattestable bool
}

// Attest runs the agent.v1 AttestAgent stream on conn: it sends the
// attestor's data with csr (DER, the public key of the agent SVID), answers
// each challenge with the attestor, and returns the agent X509-SVID. The
// error of a refused attestation is the server's status error, wrapped
// (status.Code of it is PermissionDenied, InvalidArgument...).
func Attest(ctx context.Context, conn grpc.ClientConnInterface, a Attestor, csr []byte) (*Result, error) {
	if len(csr) == 0 {
		return nil, wrapErr(errors.New("CSR is required"))
	}
	payload, err := a.Payload(ctx)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("%s: attestation data: %w", a.Type(), err))
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(ctx)
	if err != nil {
		return nil, wrapErr(fmt.Errorf("open attestation stream: %w", err))
	}
	req := &agentv1.AttestAgentRequest{
		Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
			Data:   &types.AttestationData{Type: a.Type(), Payload: payload},
			Params: &agentv1.AgentX509SVIDParams{Csr: csr},
		}},
	}
	for round := 0; ; round++ {
		if err := stream.Send(req); err != nil {
			// The server's reason arrives with the next Recv.
			if !errors.Is(err, io.EOF) {
				return nil, wrapErr(fmt.Errorf("send attestation request: %w", err))
			}
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, wrapErr(fmt.Errorf("attestation refused: %w", err))
		}
		if result := resp.GetResult(); result != nil {
			_ = stream.CloseSend()
			return resultFromProto(result)
		}
		challenge := resp.GetChallenge()
		if challenge == nil {
			return nil, wrapErr(errors.New("attestation response has neither result nor challenge"))
		}
		if round >= maxChallenges {
			return nil, wrapErr(fmt.Errorf("more than %d attestation challenges", maxChallenges))
		}
		answer, err := a.Respond(ctx, challenge)
		if err != nil {
			return nil, wrapErr(fmt.Errorf("%s: answer challenge: %w", a.Type(), err))
		}
		req = &agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: answer}}
	}
}

func resultFromProto(r *agentv1.AttestAgentResponse_Result) (*Result, error) {
	svid := r.GetSvid()
	if svid == nil || len(svid.GetCertChain()) == 0 {
		return nil, wrapErr(errors.New("attestation result has no SVID"))
	}
	chain := make([]*x509.Certificate, 0, len(svid.GetCertChain()))
	for _, der := range svid.GetCertChain() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, wrapErr(fmt.Errorf("attestation result: invalid SVID certificate: %w", err))
		}
		chain = append(chain, cert)
	}
	return &Result{SVID: chain, Reattestable: r.GetReattestable()}, nil
}

func wrapErr(err error) error {
	return fmt.Errorf("nodeattest: %w", err)
}
