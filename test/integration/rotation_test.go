package integration

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

type authorityIDs struct {
	Active, Prepared, Old *struct {
		AuthorityID string `json:"authority_id"`
	}
}

func (s *server) x509Authorities(t *testing.T) authorityIDs {
	t.Helper()
	out, errOut, code := s.cli("localauthority", "x509", "show", "-output", "json")
	if code != 0 {
		t.Fatalf("localauthority x509 show: %s", errOut)
	}
	var a authorityIDs
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	return a
}

// TestRotation_RootCAWithLiveMTLS runs the runbook's X.509 authority rotation
// (prepare, wait for the bundle to reach agents, activate, taint, wait for the
// re-signed SVIDs, revoke) while two go-spiffe workloads keep opening mTLS
// connections to each other: not one handshake may fail.
func TestRotation_RootCAWithLiveMTLS(t *testing.T) {
	s, a := plane(t)
	serverID := spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/service-registry")
	clientID := spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents")
	s.createEntry("-spiffeID", serverID.String(), "-parentID", agentAlias, "-selector", uidSelector)
	s.createEntry("-spiffeID", clientID.String(), "-parentID", agentAlias, "-selector", uidSelector)
	waitFor(t, "both SVIDs", 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		x, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+a.socket))
		return err == nil && len(x.SVIDs) == 2
	})
	source := func(id spiffeid.ID) *workloadapi.X509Source {
		src, err := workloadapi.NewX509Source(context.Background(),
			workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)),
			workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
				for _, s := range svids {
					if s.ID == id {
						return s
					}
				}
				return svids[0]
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src
	}
	srvSrc, cliSrc := source(serverID), source(clientID)
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(srvSrc, srvSrc, tlsconfig.AuthorizeID(clientID)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			// A new connection each time: every handshake verifies against the
			// bundle the workloads hold at that moment.
			conn, err := tls.Dial("tcp", l.Addr().String(), tlsconfig.MTLSClientConfig(cliSrc, cliSrc, tlsconfig.AuthorizeID(serverID)))
			if err == nil {
				_, err = conn.Write([]byte("ping"))
				if err == nil {
					buf := make([]byte, 4)
					_, err = io.ReadFull(conn, buf)
				}
				conn.Close()
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			} else {
				ok.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	old := s.x509Authorities(t).Active.AuthorityID
	issuedBy := func(src *workloadapi.X509Source) string {
		svid, err := src.GetX509SVID()
		if err != nil {
			return ""
		}
		return hex.EncodeToString(svid.Certificates[0].AuthorityKeyId)
	}
	if issuedBy(srvSrc) != old {
		t.Fatalf("SVIDs are not issued by the active authority %s", old)
	}

	// 1. prepare: the new root enters the bundle; wait until the workloads hold it.
	if _, errOut, code := s.cli("localauthority", "x509", "prepare"); code != 0 {
		t.Fatal(errOut)
	}
	next := s.x509Authorities(t).Prepared.AuthorityID
	waitFor(t, "the prepared root in the workloads' bundle", 20*time.Second, func() bool {
		b, err := cliSrc.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("neural-hive.local"))
		return err == nil && len(b.X509Authorities()) == 2
	})
	// 2. activate, 3. taint the old one: agents re-sign every SVID at once.
	if _, errOut, code := s.cli("localauthority", "x509", "activate", "-authorityID", next); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := s.cli("localauthority", "x509", "taint", "-authorityID", old); code != 0 {
		t.Fatal(errOut)
	}
	waitFor(t, "both workloads re-issued by the new authority", 30*time.Second, func() bool {
		return issuedBy(srvSrc) == next && issuedBy(cliSrc) == next
	})
	// 4. revoke: the old root leaves the bundle.
	if _, errOut, code := s.cli("localauthority", "x509", "revoke", "-authorityID", old); code != 0 {
		t.Fatal(errOut)
	}
	waitFor(t, "the revoked root out of the workloads' bundle", 20*time.Second, func() bool {
		b, err := cliSrc.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("neural-hive.local"))
		return err == nil && len(b.X509Authorities()) == 1
	})
	time.Sleep(time.Second) // keep handshaking on the final bundle
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d handshakes failed during the rotation; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() < 50 {
		t.Fatalf("only %d handshakes ran during the rotation", ok.Load())
	}
	t.Logf("%d mTLS handshakes during the root CA rotation, 0 failed", ok.Load())
}
