package workload

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestPickX509(t *testing.T) {
	a := &x509svid.SVID{ID: spiffeid.RequireFromString("spiffe://neural-hive.local/ns/demo/sa/demo")}
	b := &x509svid.SVID{ID: spiffeid.RequireFromString("spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents")}
	for _, tt := range []struct {
		name string
		id   spiffeid.ID
		want *x509svid.SVID
	}{
		{name: "ok/wanted ID second", id: b.ID, want: b},
		{name: "ok/no ID wanted: first", want: a},
		{name: "ok/wanted ID absent: first", id: spiffeid.RequireFromString("spiffe://neural-hive.local/x"), want: a},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := pickX509([]*x509svid.SVID{a, b}, tt.id); got != tt.want {
				t.Fatalf("picked %s", got.ID)
			}
		})
	}
}
