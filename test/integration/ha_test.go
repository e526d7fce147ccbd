package integration

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestHA_TwoServersSharePostgres: two servers on one PostgreSQL database keep
// their own CAs (both published in the shared bundle), and an entry created
// through server A reaches a workload of an agent attached to server B at once
// (LISTEN/NOTIFY pokes B's index; no polling interval to wait for).
func TestHA_TwoServersSharePostgres(t *testing.T) {
	dsn := postgresDSN(t)
	a := newServer(t, serverOptions{dbType: "postgres", dsn: dsn})
	b := newServer(t, serverOptions{dbType: "postgres", dsn: dsn})

	// Each server has published its own root: both bundles list two.
	waitFor(t, "both CAs in the shared bundle", 10*time.Second, func() bool {
		out, _, code := a.cli("bundle", "show")
		return code == 0 && strings.Count(out, "BEGIN CERTIFICATE") == 2
	})
	bundleA, _, _ := a.cli("bundle", "show")
	bundleB, _, _ := b.cli("bundle", "show")
	if bundleA != bundleB {
		t.Fatalf("servers disagree on the bundle:\n%s\n%s", bundleA, bundleB)
	}

	ag := newAgent(t, b, b.token(agentAlias))
	c := wlClient(t, ag)
	id := "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents"
	start := time.Now()
	a.createEntry("-spiffeID", id, "-parentID", agentAlias, "-selector", uidSelector) // through server A
	waitFor(t, "the entry created on server A at server B's agent", 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		svid, err := c.FetchX509SVID(ctx)
		return err == nil && svid.ID.String() == id
	})
	t.Logf("entry via server A reached server B's workload in %s", time.Since(start))

	// The SVID (signed by B) verifies against the shared bundle.
	svid, err := c.FetchX509SVID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bundles, err := c.FetchX509Bundles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundles); err != nil {
		t.Fatalf("SVID does not verify: %v", err)
	}
	var roots int
	for rest := []byte(bundleA); ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			t.Fatal(err)
		}
		roots++
	}
	if roots != 2 {
		t.Fatalf("%d roots in the bundle, want one per server", roots)
	}

	// A restarted server comes back with its own CA, not the other's.
	a.stop()
	a.start()
	after, _, _ := a.cli("bundle", "show")
	if strings.Count(after, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("restart changed the number of roots:\n%s", after)
	}
}
