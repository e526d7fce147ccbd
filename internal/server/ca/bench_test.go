package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// BenchmarkSignX509SVID mints workload X509-SVIDs with a P-256 CA. The
// target is at least 70% of BenchmarkRawECDSASignP256's rate, i.e. minting
// costs at most ~1.43 raw signatures.
func BenchmarkSignX509SVID(b *testing.B) {
	env := newTestEnv(b, nil)
	leafKey := newECKey(b)
	params := X509SVIDParams{SPIFFEID: mustID(b, "spiffe://example.org/ns/default/sa/bench"), PublicKey: &leafKey.PublicKey}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := env.ca.SignX509SVID(ctx, params); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawECDSASignP256 is the floor: one P-256 signature of a SHA-256
// digest, what every X509-SVID costs at least.
func BenchmarkRawECDSASignP256(b *testing.B) {
	key := newECKey(b)
	digest := sha256.Sum256([]byte("tbs"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}
