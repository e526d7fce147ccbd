package flow

import (
	"strings"
	"testing"
	"time"
)

func TestCodec(t *testing.T) {
	for _, tt := range []struct {
		name, in, err string
	}{
		{name: "ok/lease", in: `{"instance_id":"a","expires_at":"2025-01-01T00:00:00Z","heartbeat_interval_ns":10000000000}`},
		{name: "fail/unknown field", in: `{"instance_id":"a","admin":true}`, err: "unknown field"},
		{name: "fail/trailing data", in: `{"instance_id":"a"} {}`, err: "trailing data"},
		{name: "fail/not json", in: `instance_id=a`, err: "flow: decode *flow.Lease"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var l Lease
			err := jsonCodec{}.Unmarshal([]byte(tt.in), &l)
			if tt.err == "" {
				if err != nil || l.InstanceID != "a" || l.HeartbeatInterval != 10*time.Second {
					t.Fatalf("got %+v, %v", l, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("got %v, want %q", err, tt.err)
			}
		})
	}
}
