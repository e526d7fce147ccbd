package api

import (
	"context"
	"log/slog"

	"github.com/neural-hive/hive-identity/internal/server/authz"
)

// Log attribute keys used by the services and the endpoints.
const (
	KeyError       = "error"
	KeyMethod      = "method"
	KeyCallerID    = "caller_id"
	KeyCallerAddr  = "caller_addr"
	KeyAuthorized  = "authorized_as"
	KeyEntryID     = "entry_id"
	KeySPIFFEID    = "spiffe_id"
	KeyParentID    = "parent_id"
	KeyTrustDomain = "trust_domain_id"
	KeyAuthorityID = "local_authority_id"
	KeySubjectKey  = "subject_key_id"
	KeyCSR         = "csr"
	KeyTTL         = "ttl"
	KeyCount       = "count"
	KeyExpiresAt   = "expires_at"
	KeySerial      = "serial_num"
	KeyMode        = "mode"
)

var discardLogger = slog.New(slog.DiscardHandler)

type loggerKey struct{}

type callerKey struct{}

// WithLogger returns ctx carrying the request logger.
func WithLogger(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// Logger returns the request logger of ctx, or a logger that discards
// everything when there is none.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return discardLogger
}

// WithCaller returns ctx carrying the authenticated and authorized caller.
func WithCaller(ctx context.Context, c authz.Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller set by the endpoints' authorization
// interceptor, and false outside a served request.
func CallerFrom(ctx context.Context) (authz.Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(authz.Caller)
	return c, ok
}
