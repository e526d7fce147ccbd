package spiffegrpc

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

type peerIDKey struct{}

// PeerIDFromContext returns the SPIFFE ID that an MTLSAuth or JWTAuth
// interceptor authenticated for the current call. When both run, it is the
// ID of the last one in the chain. It returns false outside such a call.
func PeerIDFromContext(ctx context.Context) (spiffeid.ID, bool) {
	id, ok := ctx.Value(peerIDKey{}).(spiffeid.ID)
	return id, ok
}

func withPeerID(ctx context.Context, id spiffeid.ID) context.Context {
	return context.WithValue(ctx, peerIDKey{}, id)
}

// authenticator is what MTLSAuth and JWTAuth plug into the shared
// interceptors: authenticate returns the identity, or the refusal with the
// ID known so far (verified or only claimed) for the log.
type authenticator interface {
	authenticate(ctx context.Context, method string) (spiffeid.ID, *AuthError)
	authConfig() *config
	kind() authKind
	authorizer() Authorizer
}

// check runs authentication and authorization for one call and records the
// outcome in metrics and, for refusals, in the log.
func check(ctx context.Context, a authenticator, method string) (context.Context, error) {
	cfg := a.authConfig()
	id, aerr := a.authenticate(ctx, method)
	if aerr == nil {
		if err := a.authorizer()(ctx, id, method); err != nil {
			aerr = &AuthError{Reason: ReasonDenied, Err: err}
		}
	}
	if aerr == nil {
		cfg.metrics.record(a.kind(), method, "")
		return withPeerID(ctx, id), nil
	}
	cfg.metrics.record(a.kind(), method, aerr.Reason)
	var addr string
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	var sid string
	if !id.IsZero() {
		sid = id.String()
	}
	cfg.logger.WarnContext(ctx, "Auth refused",
		"auth", a.kind().String(),
		"method", method,
		"spiffe_id", sid,
		"reason", string(aerr.Reason),
		"caller_addr", addr,
		"error", aerr.Err.Error())
	if aerr.Reason == ReasonDenied {
		return nil, status.Errorf(codes.PermissionDenied, "auth: %s may not call %s", id, method)
	}
	return nil, status.Errorf(codes.Unauthenticated, "auth: %s: %s", aerr.Reason, aerr.Err)
}

func unaryInterceptor(a authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := check(ctx, a, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func streamInterceptor(a authenticator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := check(ss.Context(), a, info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
	}
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
