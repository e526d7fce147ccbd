package ca

import (
	"context"
	"sync"
	"testing"
)

// TestConcurrentSigningDuringRotation signs X509-SVIDs and JWT-SVIDs from
// several goroutines while authorities are prepared and activated; run
// with -race. Every SVID must verify against the bundle as published when
// the signing finished.
func TestConcurrentSigningDuringRotation(t *testing.T) {
	env := newTestEnv(t, nil)
	ctx := context.Background()
	key := newECKey(t)
	id := mustID(t, "spiffe://example.org/w")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				chain, err := env.ca.SignX509SVID(ctx, X509SVIDParams{SPIFFEID: id, PublicKey: &key.PublicKey})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := env.ca.SignJWTSVID(ctx, JWTSVIDParams{SPIFFEID: id, Audience: []string{"a"}}); err != nil {
					t.Error(err)
					return
				}
				if !bundleHasX509ID(env, AuthorityIDFromSKID(chain[0].AuthorityKeyId)) {
					t.Error("FD-01: SVID signed by an authority that is not in the bundle")
					return
				}
			}
		})
	}
	for range 5 {
		p, err := env.ca.PrepareX509Authority(ctx)
		requireNoError(t, err)
		pj, err := env.ca.PrepareJWTAuthority(ctx)
		requireNoError(t, err)
		_, err = env.ca.ActivateX509Authority(ctx, p.AuthorityID)
		requireNoError(t, err)
		_, err = env.ca.ActivateJWTAuthority(ctx, pj.AuthorityID)
		requireNoError(t, err)
		_ = env.ca.X509Authorities()
	}
	close(stop)
	wg.Wait()
}

func bundleHasX509ID(env *testEnv, id string) bool {
	b, err := env.store.FetchBundle(context.Background(), testTD.IDString())
	if err != nil {
		return false
	}
	for _, a := range b.X509Authorities {
		if x509AuthorityID(a.Certificate) == id {
			return true
		}
	}
	return false
}
