package api

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// PublicError marks an error whose text may be shown to API clients: the
// text names the problem with the request and carries no SQL, stack, path or
// key material. Validation errors built by this package are PublicErrors.
type PublicError struct {
	Msg string
	Err error // optional cause, used by errors.Is/As only; never shown
}

func (e *PublicError) Error() string { return e.Msg }

func (e *PublicError) Unwrap() error { return e.Err }

// Publicf returns a *PublicError with a formatted message. The message must
// only contain request data or constant text.
func Publicf(format string, args ...any) error {
	return &PublicError{Msg: fmt.Sprintf(format, args...)}
}

// publicDetail returns the client-visible text of err, and false when err
// must not be shown (unknown internal errors such as a database driver
// error). Shown: status errors (already client facing), *PublicError, and the
// message of a domain sentinel from the datastore, stripped of its
// package prefix.
func publicDetail(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	if s, ok := status.FromError(err); ok {
		return s.Message(), true
	}
	var pe *PublicError
	if errors.As(err, &pe) {
		return pe.Msg, true
	}
	var pm interface{ PublicMessage() string }
	if errors.As(err, &pm) {
		return pm.PublicMessage(), true
	}
	// The datastore's refusals (every error wrapping one of its sentinels)
	// carry no SQL or driver text: show them without the package prefix.
	// Its internal failures wrap none of them and stay hidden.
	for _, sentinel := range []error{
		datastore.ErrNotFound, datastore.ErrAlreadyExists,
		datastore.ErrFailedPrecondition, datastore.ErrInvalidArgument,
	} {
		if errors.Is(err, sentinel) {
			return strings.ReplaceAll(err.Error(), "datastore: ", ""), true
		}
	}
	return "", false
}

// MakeErr logs the failure once on log and returns the gRPC status error a
// client sees, following SPIRE's conventions (pkg/common/api/status.go):
//   - InvalidArgument: message "msg: detail", logged as "Invalid argument: msg";
//   - NotFound: message msg only, the cause is neither logged nor returned;
//   - other codes: "msg: detail" when err's text is public (see PublicError),
//     msg alone otherwise; the full err is logged.
//
// MakeErr returns nil for codes.OK.
func MakeErr(log *slog.Logger, code codes.Code, msg string, err error) error {
	if log == nil {
		log = discardLogger
	}
	switch code {
	case codes.OK:
		return nil
	case codes.NotFound:
		log.Error(capitalize(msg))
		return status.Error(code, msg)
	}
	text := msg
	if d, ok := publicDetail(err); ok && d != "" {
		text = msg + ": " + d
	}
	attrs := []any{}
	if err != nil {
		attrs = append(attrs, slog.String(KeyError, err.Error()))
	}
	if code == codes.InvalidArgument {
		log.Error("Invalid argument: "+msg, attrs...)
	} else {
		log.Error(capitalize(msg), attrs...)
	}
	return status.Error(code, text)
}

// MakeStatus is MakeErr for the per-item status of batch RPCs.
func MakeStatus(log *slog.Logger, code codes.Code, msg string, err error) *types.Status {
	e := MakeErr(log, code, msg, err)
	if e == nil {
		return OK()
	}
	return CreateStatus(code, status.Convert(e).Message())
}

// CreateStatus returns a per-item status without logging.
func CreateStatus(code codes.Code, msg string) *types.Status {
	return &types.Status{Code: int32(code), Message: msg} //nolint:gosec // gRPC codes fit in int32
}

// OK is the per-item status of a successful batch item: code 0, message "OK".
func OK() *types.Status {
	return CreateStatus(codes.OK, codes.OK.String())
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// StoreCode is the gRPC code for an error from the datastore, as SPIRE's
// datastore reports it: NotFound, AlreadyExists, FailedPrecondition and
// InvalidArgument for the store's refusals, Internal for everything else,
// including a missing federated bundle (SPIRE: Internal "unable to find
// federated bundle").
func StoreCode(err error) codes.Code {
	var missing *datastore.MissingBundleError
	switch {
	case err == nil:
		return codes.OK
	case errors.As(err, &missing):
		return codes.Internal
	case errors.Is(err, datastore.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, datastore.ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, datastore.ErrFailedPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, datastore.ErrInvalidArgument):
		return codes.InvalidArgument
	}
	return codes.Internal
}

// ReadCode is the code of a failed read (list, count): InvalidArgument when
// the store refused the request as malformed, Internal otherwise.
func ReadCode(err error) codes.Code {
	if errors.Is(err, datastore.ErrInvalidArgument) {
		return codes.InvalidArgument
	}
	return codes.Internal
}

// PermissionDenied returns a PermissionDenied status whose details carry the
// reason, so that agents can act on it (re-attest, stop), as SPIRE's
// errorutil.PermissionDenied.
func PermissionDenied(log *slog.Logger, reason types.PermissionDeniedDetails_Reason, msg string) error {
	if log == nil {
		log = discardLogger
	}
	log.Error(capitalize(msg))
	st := status.New(codes.PermissionDenied, msg)
	if withDetails, err := st.WithDetails(&types.PermissionDeniedDetails{Reason: reason}); err == nil {
		st = withDetails
	}
	return st.Err()
}
