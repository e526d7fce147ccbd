package spiffegrpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/pkg/spiffegrpc"
	"github.com/neural-hive/hive-identity/pkg/spiffegrpc/spiffegrpctest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// countingCache is a client session cache that counts stored tickets.
type countingCache struct {
	inner tls.ClientSessionCache
	puts  atomic.Int64
}

func (c *countingCache) Get(key string) (*tls.ClientSessionState, bool) { return c.inner.Get(key) }
func (c *countingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts.Add(1)
	}
	c.inner.Put(key, cs)
}

// T10: a client that kept a TLS session cannot resume its way past the
// bundle. After the bundle drops the CA that signed the client's SVID, the
// established connection and every new one are refused.
func TestMTLS_T10_SessionResumptionDoesNotSkipVerification(t *testing.T) {
	dropped := spiffegrpctest.NewCA(t, tdA) // signs the client
	kept := spiffegrpctest.NewCA(t, tdA)    // signs the server
	serverSVID := kept.X509SVID(t, serverID)
	clientSVID := dropped.X509SVID(t, clientID)
	clientBundle := x509bundle.FromX509Authorities(tdA, []*x509.Certificate{dropped.Cert(), kept.Cert()})

	type result struct {
		first, sameConnAfterDrop, newConnAfterDrop error
		resumed                                    bool
		tickets                                    int64
	}
	run := func(t *testing.T, serverOpts func(bundle *x509bundle.Bundle) []grpc.ServerOption) result {
		serverBundle := x509bundle.FromX509Authorities(tdA, []*x509.Certificate{dropped.Cert(), kept.Cert()})
		srv := startServer(t, "tcp", serverOpts(serverBundle)...)
		cache := &countingCache{inner: tls.NewLRUClientSessionCache(8)}
		newCreds := func() credentials.TransportCredentials {
			cfg := tlsconfig.MTLSClientConfig(clientSVID, clientBundle, tlsconfig.AuthorizeID(serverID))
			cfg.ClientSessionCache = cache
			return credentials.NewTLS(cfg)
		}
		var r result
		ctx := ctxT(t)
		cc1 := dial(t, srv.addr, newCreds())
		_, r.first = spiffegrpctest.CallWho(ctx, cc1)
		serverBundle.RemoveX509Authority(dropped.Cert())
		_, r.sameConnAfterDrop = spiffegrpctest.CallWho(ctx, cc1)
		cc2 := dial(t, srv.addr, newCreds())
		var p peer.Peer
		_, r.newConnAfterDrop = spiffegrpctest.CallWho(ctx, cc2, grpc.Peer(&p))
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			r.resumed = info.State.DidResume
		}
		r.tickets = cache.puts.Load()
		return r
	}

	t.Run("fail/T10-spiffegrpc-refuses-after-ca-dropped", func(t *testing.T) {
		metrics, reg := newMetrics(t)
		logger, logs := spiffegrpctest.NewLogger(t)
		r := run(t, func(b *x509bundle.Bundle) []grpc.ServerOption {
			auth, err := spiffegrpc.NewMTLSAuth(serverSVID, b, spiffegrpc.AuthorizeAny(), spiffegrpc.WithMetrics(metrics), spiffegrpc.WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}
			return auth.ServerOptions()
		})
		if r.first != nil {
			t.Fatalf("first call: %v", r.first)
		}
		wantStatus(t, r.sameConnAfterDrop, "Unauthenticated", "no longer in the bundle")
		wantStatus(t, r.newConnAfterDrop, "Unauthenticated", "unknown authority")
		if r.tickets != 0 || r.resumed {
			t.Errorf("server issued %d session tickets (resumed=%v); want none", r.tickets, r.resumed)
		}
		wantMetrics(t, reg, "grpc_auth", spiffegrpctest.MethodWho, 1, 2, map[spiffegrpc.Reason]int{spiffegrpc.ReasonUntrusted: 2})
		wantRefusalLog(t, logs.String(), spiffegrpctest.MethodWho, spiffegrpc.ReasonUntrusted, clientID.String())
	})

	// The hole this guards against: go-spiffe's server credentials keep Go's
	// session tickets, and a resumed session skips VerifyPeerCertificate.
	t.Run("control/go-spiffe-default-resumes-past-dropped-ca", func(t *testing.T) {
		r := run(t, func(b *x509bundle.Bundle) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.Creds(grpccredentials.MTLSServerCredentials(serverSVID, b, tlsconfig.AuthorizeAny()))}
		})
		if r.first != nil {
			t.Fatalf("first call: %v", r.first)
		}
		if !r.resumed || r.newConnAfterDrop != nil {
			t.Logf("control did not reproduce the resumption hole (resumed=%v, err=%v)", r.resumed, r.newConnAfterDrop)
			return
		}
		t.Logf("go-spiffe default: resumed session accepted after its CA left the bundle (tickets=%d)", r.tickets)
	})
}

// Rotation of the CA, both SVIDs and both bundles during steady traffic,
// through go-spiffe's workloadapi client against a fake Workload API: new
// handshakes pick up the new SVIDs and bundles with no restart and no
// failed call. The old CA is dropped after every connection re-handshook,
// as SPIRE keeps an old authority until the SVIDs it signed are gone.
func TestMTLS_RotationMidTrafficZeroFailures(t *testing.T) {
	ca1 := spiffegrpctest.NewCA(t, tdA)
	ca2 := spiffegrpctest.NewCA(t, tdA)
	ctx := ctxT(t)

	serverAPI, clientAPI := spiffegrpctest.NewWorkloadAPI(t), spiffegrpctest.NewWorkloadAPI(t)
	push := func(api *spiffegrpctest.WorkloadAPI, id spiffeid.ID, signer *spiffegrpctest.CA, roots ...*spiffegrpctest.CA) {
		t.Helper()
		var certs []*x509.Certificate
		for _, r := range roots {
			certs = append(certs, r.Cert())
		}
		if err := api.SetX509(signer.X509SVID(t, id), x509bundle.FromX509Authorities(tdA, certs)); err != nil {
			t.Fatal(err)
		}
	}
	push(serverAPI, serverID, ca1, ca1)
	push(clientAPI, clientID, ca1, ca1)
	source := func(api *spiffegrpctest.WorkloadAPI) *workloadapi.X509Source {
		s, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(api.Addr())))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	serverSrc, clientSrc := source(serverAPI), source(clientAPI)

	metrics, reg := newMetrics(t)
	logger, logs := spiffegrpctest.NewLogger(t)
	auth, err := spiffegrpc.NewMTLSAuth(serverSrc, serverSrc, spiffegrpc.AuthorizeID(clientID), spiffegrpc.WithMetrics(metrics), spiffegrpc.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "tcp", auth.ServerOptions()...)

	// What each side presented, as seen by the client.
	var sawServerCA2, sawClientCA2 atomic.Bool
	clientCreds := grpccredentials.MTLSClientCredentials(clientSrc, clientSrc,
		func(id spiffeid.ID, chains [][]*x509.Certificate) error {
			if id != serverID {
				return errors.New("unexpected server")
			}
			if chains[0][0].CheckSignatureFrom(ca2.Cert()) == nil {
				sawServerCA2.Store(true)
			}
			return nil
		},
		tlsconfig.WithTrace(tlsconfig.Trace{GotCertificate: func(info tlsconfig.GotCertificateInfo, _ any) {
			if info.Cert != nil && info.Cert.Leaf.CheckSignatureFrom(ca2.Cert()) == nil {
				sawClientCA2.Store(true)
			}
		}}))

	const workers = 4
	var (
		successes, failures atomic.Int64
		firstErr            atomic.Value
		generation          atomic.Int64
		acked               [workers]atomic.Int64 // generation of each worker's last successful connection
		progress            = make(chan struct{}, 1)
		stop                = make(chan struct{})
		wg                  sync.WaitGroup
	)
	for i := range workers {
		wg.Go(func() {
			var cc *grpc.ClientConn
			var ccGen int64
			defer func() {
				if cc != nil {
					_ = cc.Close()
				}
			}()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if g := generation.Load(); cc == nil || n%5 == 0 || ccGen != g {
					if cc != nil {
						_ = cc.Close()
					}
					var err error
					if cc, err = grpc.NewClient(srv.addr, grpc.WithTransportCredentials(clientCreds)); err != nil {
						panic(err)
					}
					ccGen = g
				}
				callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				got, err := spiffegrpctest.CallWho(callCtx, cc)
				cancel()
				if err != nil || got != clientID.String() {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v (who=%q)", err, got))
				} else {
					successes.Add(1)
					acked[i].Store(ccGen)
				}
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-progress:
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			}
		}
	}
	hasRoot := func(s *workloadapi.X509Source, ca *spiffegrpctest.CA) bool {
		b, err := s.GetX509BundleForTrustDomain(tdA)
		return err == nil && b.HasX509Authority(ca.Cert())
	}
	signedBy := func(s *workloadapi.X509Source, ca *spiffegrpctest.CA) bool {
		svid, err := s.GetX509SVID()
		return err == nil && svid.Certificates[0].CheckSignatureFrom(ca.Cert()) == nil
	}
	after := func(n int64) func() bool {
		target := successes.Load() + n
		return func() bool { return successes.Load() >= target }
	}

	waitFor("steady traffic", after(40))

	// 1. The new CA joins both bundles.
	push(serverAPI, serverID, ca1, ca1, ca2)
	push(clientAPI, clientID, ca1, ca1, ca2)
	waitFor("bundles with ca2", func() bool { return hasRoot(serverSrc, ca2) && hasRoot(clientSrc, ca2) })
	waitFor("traffic after bundle update", after(40))

	// 2. Both SVIDs rotate to the new CA.
	push(serverAPI, serverID, ca2, ca1, ca2)
	push(clientAPI, clientID, ca2, ca1, ca2)
	waitFor("SVIDs from ca2", func() bool { return signedBy(serverSrc, ca2) && signedBy(clientSrc, ca2) })
	waitFor("handshakes with the new SVIDs", func() bool { return sawServerCA2.Load() && sawClientCA2.Load() })
	waitFor("traffic after SVID rotation", after(40))

	// 3. Every worker reconnects; then the old CA leaves both bundles.
	gen := generation.Add(1)
	waitFor("all workers on new connections", func() bool {
		for i := range acked {
			if acked[i].Load() != gen {
				return false
			}
		}
		return true
	})
	push(serverAPI, serverID, ca2, ca2)
	push(clientAPI, clientID, ca2, ca2)
	waitFor("bundles without ca1", func() bool { return !hasRoot(serverSrc, ca1) && !hasRoot(clientSrc, ca1) })
	waitFor("traffic after ca1 dropped", after(40))

	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d failed calls during rotation (first: %v) of %d", n, firstErr.Load(), n+successes.Load())
	}
	if n, err := testutil.GatherAndCount(reg, "grpc_auth_failures_total"); err != nil || n != 0 {
		t.Errorf("grpc_auth_failures_total series = %d (%v), want 0", n, err)
	}
	if got, err := testutil.GatherAndCount(reg, "grpc_auth_attempts_total"); err != nil || got != 1 {
		t.Errorf("grpc_auth_attempts_total series = %d (%v), want only status=success", got, err)
	}
	if strings.Contains(logs.String(), "Auth refused") {
		t.Errorf("refusals logged during rotation: %s", logs)
	}
	t.Logf("%d calls, 0 failures across CA, SVID and bundle rotation", successes.Load())
}
