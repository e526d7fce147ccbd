package endpoints

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// callerFromPeer builds the caller of a request from its connection: a unix
// socket peer is local; a TCP peer is identified by the single URI SAN of
// the leaf certificate it presented, if any (the chain itself was verified
// by the TLS handshake).
func callerFromPeer(ctx context.Context) (authz.Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return authz.Caller{}, status.Error(codes.Internal, "no peer information available")
	}
	c := authz.Caller{Addr: p.Addr}
	switch p.Addr.Network() {
	case "unix", "unixgram", "unixpacket":
		c.Local = true
		return c, nil
	case "tcp", "tcp4", "tcp6":
	default:
		return c, status.Errorf(codes.Internal, "unsupported network %q", p.Addr.Network())
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return c, nil
	}
	return callerFromTLS(c, info.State)
}

func callerFromTLS(c authz.Caller, st tls.ConnectionState) (authz.Caller, error) {
	if !st.HandshakeComplete {
		return c, status.Error(codes.Internal, "TLS handshake is not complete")
	}
	if len(st.PeerCertificates) == 0 {
		return c, nil
	}
	leaf := st.PeerCertificates[0]
	switch len(leaf.URIs) {
	case 0:
		return c, status.Error(codes.Unauthenticated, "client certificate has no URI SAN")
	case 1:
	default:
		return c, status.Error(codes.Unauthenticated, "client certificate has more than one URI SAN")
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return c, status.Errorf(codes.Unauthenticated, "client certificate has a malformed URI SAN: %v", err)
	}
	c.ID = id
	c.X509SVID = leaf
	return c, nil
}

// authorize authenticates and authorizes the caller of method, applies the
// per-IP rate limits to TCP callers, and returns the request context
// carrying the caller and the request logger.
func (e *Endpoints) authorize(ctx context.Context, method string, req any) (context.Context, *slog.Logger, error) {
	log := e.log.With(slog.String(api.KeyMethod, method))
	c, err := callerFromPeer(ctx)
	if err != nil {
		log.Error("Failed to identify caller", slog.String(api.KeyError, err.Error()))
		return nil, log, err
	}
	if !c.Local && c.Addr != nil {
		log = log.With(slog.String(api.KeyCallerAddr, c.Addr.String()))
	}
	if !c.ID.IsZero() {
		log = log.With(slog.String(api.KeyCallerID, c.ID.String()))
	}
	role, err := authz.Authorize(ctx, method, c, e.facts)
	if err != nil {
		return nil, log, deniedStatus(log, err)
	}
	c.Role = role
	log = log.With(slog.String(api.KeyAuthorized, role.String()))
	if !c.Local {
		if err := e.limits.apply(ctx, method, c.Addr, req); err != nil {
			log.Error("Rejecting request due to rate limiting", slog.String(api.KeyError, err.Error()))
			return nil, log, err
		}
	}
	ctx = api.WithCaller(ctx, c)
	ctx = api.WithLogger(ctx, log)
	return ctx, log, nil
}

// deniedStatus maps an authorization failure to its status, and logs it.
func deniedStatus(log *slog.Logger, err error) error {
	var d *authz.DeniedError
	if !errors.As(err, &d) {
		log.Error("Failed to authorize caller", slog.String(api.KeyError, err.Error()))
		return status.Error(codes.Internal, "failed to authorize caller")
	}
	// Warn, with the caller (already on log) and the reason: the runbook
	// finds refused callers with grep -i auth.
	log.Warn("Failed to authenticate caller", slog.String(telemetry.Reason, d.Msg))
	st := status.New(codes.PermissionDenied, d.Msg)
	if reason, ok := deniedReason(d.Reason); ok {
		if withDetails, err := st.WithDetails(&types.PermissionDeniedDetails{Reason: reason}); err == nil {
			st = withDetails
		}
	}
	return st.Err()
}

func deniedReason(r authz.Reason) (types.PermissionDeniedDetails_Reason, bool) {
	switch r {
	case authz.ReasonAgentExpired:
		return types.PermissionDeniedDetails_AGENT_EXPIRED, true
	case authz.ReasonAgentNotActive:
		return types.PermissionDeniedDetails_AGENT_NOT_ACTIVE, true
	case authz.ReasonAgentNotAttested:
		return types.PermissionDeniedDetails_AGENT_NOT_ATTESTED, true
	case authz.ReasonAgentMustReattest:
		return types.PermissionDeniedDetails_AGENT_MUST_REATTEST, true
	case authz.ReasonAgentBanned:
		return types.PermissionDeniedDetails_AGENT_BANNED, true
	}
	return 0, false
}

// finish turns what a handler returned into what the client sees: status
// errors pass; any other error, or a panic, becomes Internal with a generic
// message (its text may hold SQL or paths) and is logged once.
func finish(log *slog.Logger, err error, panicked any) error {
	if panicked != nil {
		log.Error("Panic in RPC handler", slog.String(api.KeyError, fmt.Sprint(panicked)), slog.String("stack", string(debug.Stack())))
		return status.Error(codes.Internal, "internal error")
	}
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, context.Canceled.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	log.Error("RPC handler failed", slog.String(api.KeyError, err.Error()))
	return status.Error(codes.Internal, "internal error")
}

func (e *Endpoints) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	ctx, log, err := e.authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	defer func() {
		err = finish(log, err, recover())
		if err != nil {
			resp = nil
		}
		log.Debug("API call", slog.String("code", status.Code(err).String()), slog.Duration("duration", time.Since(start)))
	}()
	return handler(ctx, req)
}

func (e *Endpoints) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	ctx, log, err := e.authorize(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return err
	}
	// Streams end when the server stops, so that a graceful stop does not
	// wait for long-lived watchers.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.stopping, cancel)
	defer stop()
	defer func() {
		err = finish(log, err, recover())
	}()
	return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
