package spiffegrpctest

import (
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// WorkloadAPI is a fake SPIFFE Workload API for one workload, served over
// gRPC on a unix socket in a short temporary directory, for go-spiffe's
// workloadapi client (X509Source, JWTSource, BundleSource). Set* calls
// replace what it serves and wake every open stream, which then sends the
// latest state (updates coalesce). It refuses calls without the
// workload.spiffe.io security header, as the specification requires.
// Methods are safe for concurrent use.
type WorkloadAPI struct {
	addr string

	mu         sync.Mutex
	x509       *workload.X509SVIDResponse
	jwtBundles *workload.JWTBundlesResponse
	changed    chan struct{}
	jwtCA      *CA
	jwtID      spiffeid.ID
	jwtTTL     time.Duration
	jwtErr     error
	jwtFetches int
}

// NewWorkloadAPI starts a fake Workload API; it is stopped and its socket
// removed when the test ends.
func NewWorkloadAPI(tb testing.TB) *WorkloadAPI {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		tb.Fatalf("temp dir: %v", err)
	}
	sock := filepath.Join(dir, "agent.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	w := &WorkloadAPI{addr: "unix://" + sock, changed: make(chan struct{})}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, &workloadServer{w: w})
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	tb.Cleanup(func() {
		srv.Stop()
		wg.Wait()
		_ = os.RemoveAll(dir)
	})
	return w
}

// Addr returns the socket address in the form workloadapi.WithAddr takes.
func (w *WorkloadAPI) Addr() string { return w.addr }

// SetX509 serves svid with bundle as its trust domain's bundle and the
// federated bundles beside it.
func (w *WorkloadAPI) SetX509(svid *x509svid.SVID, bundle *x509bundle.Bundle, federated ...*x509bundle.Bundle) error {
	certs, key, err := svid.MarshalRaw()
	if err != nil {
		return err
	}
	resp := &workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{{
			SpiffeId:    svid.ID.String(),
			X509Svid:    certs,
			X509SvidKey: key,
			Bundle:      concatDER(bundle.X509Authorities()),
		}},
		FederatedBundles: map[string][]byte{},
	}
	for _, b := range federated {
		resp.FederatedBundles[b.TrustDomain().IDString()] = concatDER(b.X509Authorities())
	}
	w.mu.Lock()
	w.x509 = resp
	w.notifyLocked()
	w.mu.Unlock()
	return nil
}

// SetJWTBundles serves the given JWT bundles.
func (w *WorkloadAPI) SetJWTBundles(bundles ...*jwtbundle.Bundle) error {
	resp := &workload.JWTBundlesResponse{Bundles: map[string][]byte{}}
	for _, b := range bundles {
		doc, err := b.Marshal()
		if err != nil {
			return err
		}
		resp.Bundles[b.TrustDomain().IDString()] = doc
	}
	w.mu.Lock()
	w.jwtBundles = resp
	w.notifyLocked()
	w.mu.Unlock()
	return nil
}

// SetJWTIssuer makes FetchJWTSVID return JWT-SVIDs for id signed by ca and
// valid for ttl from the moment of each fetch.
func (w *WorkloadAPI) SetJWTIssuer(ca *CA, id spiffeid.ID, ttl time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jwtCA, w.jwtID, w.jwtTTL = ca, id, ttl
}

// SetJWTFetchError makes FetchJWTSVID fail with err (nil restores service),
// to simulate an agent outage.
func (w *WorkloadAPI) SetJWTFetchError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jwtErr = err
}

// JWTFetches returns how many FetchJWTSVID calls were answered so far.
func (w *WorkloadAPI) JWTFetches() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.jwtFetches
}

func (w *WorkloadAPI) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *WorkloadAPI) snapshot() (*workload.X509SVIDResponse, *workload.JWTBundlesResponse, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.x509, w.jwtBundles, w.changed
}

type workloadServer struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	w *WorkloadAPI
}

func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

func (s *workloadServer) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	if err := checkHeader(stream.Context()); err != nil {
		return err
	}
	for {
		resp, _, changed := s.w.snapshot()
		if resp != nil {
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (s *workloadServer) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	if err := checkHeader(stream.Context()); err != nil {
		return err
	}
	for {
		resp, _, changed := s.w.snapshot()
		if resp != nil {
			out := &workload.X509BundlesResponse{Bundles: map[string][]byte{}}
			for _, svid := range resp.Svids {
				id, err := spiffeid.FromString(svid.SpiffeId)
				if err == nil {
					out.Bundles[id.TrustDomain().IDString()] = svid.Bundle
				}
			}
			for td, b := range resp.FederatedBundles {
				out.Bundles[td] = b
			}
			if err := stream.Send(out); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (s *workloadServer) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	if err := checkHeader(stream.Context()); err != nil {
		return err
	}
	for {
		_, resp, changed := s.w.snapshot()
		if resp != nil {
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (s *workloadServer) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	w := s.w
	w.mu.Lock()
	ca, id, ttl, jwtErr := w.jwtCA, w.jwtID, w.jwtTTL, w.jwtErr
	if jwtErr == nil && ca != nil {
		w.jwtFetches++
	}
	w.mu.Unlock()
	switch {
	case jwtErr != nil:
		return nil, status.Error(codes.Unavailable, jwtErr.Error())
	case ca == nil:
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	case len(req.Audience) == 0:
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	tok, err := ca.jwtSVID(id, req.Audience, ttl)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: id.String(), Svid: tok}}}, nil
}

func concatDER(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}
