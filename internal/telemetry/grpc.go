package telemetry

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// rpcMetrics counts gRPC calls by service, method and code, and times unary
// calls. The gRPC server calls interceptors only for registered methods
// (unknown ones get Unimplemented before any interceptor), so service and
// method are bounded by the services the process registers.
type rpcMetrics struct {
	calls    *prometheus.CounterVec   // service, method, code  (or method, code)
	duration *prometheus.HistogramVec // service, method        (or method); nil: not timed
	withSvc  bool
}

// splitMethod splits "/pkg.Service/Method" into its service and method.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return Other, full
}

func (r *rpcMetrics) observe(fullMethod string, err error, d time.Duration, unary bool) {
	service, method := splitMethod(fullMethod)
	code := status.Code(err).String()
	if r.withSvc {
		r.calls.WithLabelValues(service, method, code).Inc()
	} else {
		r.calls.WithLabelValues(method, code).Inc()
	}
	if !unary || r.duration == nil {
		return
	}
	if r.withSvc {
		r.duration.WithLabelValues(service, method).Observe(d.Seconds())
	} else {
		r.duration.WithLabelValues(method).Observe(d.Seconds())
	}
}

func (r *rpcMetrics) unary() grpc.UnaryServerInterceptor {
	if r == nil {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return handler(ctx, req)
		}
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		r.observe(info.FullMethod, err, time.Since(start), true)
		return resp, err
	}
}

func (r *rpcMetrics) stream() grpc.StreamServerInterceptor {
	if r == nil {
		return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, ss)
		}
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		r.observe(info.FullMethod, err, 0, false)
		return err
	}
}
