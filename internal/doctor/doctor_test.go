package doctor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestReportFormat(t *testing.T) {
	r := NewReport([]Finding{
		{Check: "agent.health", Status: OK, Detail: "Agent is healthy."},
		{Check: "agent.svid", Status: Warn, Detail: "spiffe://td/x expires soon", Resolution: "Incident: X.509-SVID Expiration\n  curl -s x | jq '.svids[0].expires_at'"},
		{Check: "server.entry", Status: Crit, Detail: "no entry for y", Resolution: "Se entry SPIFFE ausente: Recriar entry\n\n  spire-server entry create -selector k8s:ns:<namespace>\n"},
	})
	var pretty strings.Builder
	if err := r.WritePretty(&pretty); err != nil {
		t.Fatal(err)
	}
	want := "OK    agent.health: Agent is healthy.\n" +
		"WARN  agent.svid: spiffe://td/x expires soon\n" +
		"      Incident: X.509-SVID Expiration\n" +
		"        curl -s x | jq '.svids[0].expires_at'\n" +
		"CRIT  server.entry: no entry for y\n" +
		"      Se entry SPIFFE ausente: Recriar entry\n" +
		"\n" +
		"        spire-server entry create -selector k8s:ns:<namespace>\n" +
		"\nSummary: CRIT (1 OK, 1 WARN, 1 CRIT)\n"
	if pretty.String() != want {
		t.Errorf("pretty:\n%s\nwant:\n%s", pretty.String(), want)
	}
	if r.ExitCode() != 1 {
		t.Errorf("exit %d with a CRIT finding", r.ExitCode())
	}

	var js strings.Builder
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if strings.Count(js.String(), "\n") != 1 || !strings.Contains(js.String(), "k8s:ns:<namespace>") {
		t.Errorf("json is not one unescaped line: %s", js.String())
	}
	if !strings.Contains(js.String(), `"resolution":"Incident: X.509-SVID Expiration\n  curl -s x | jq '.svids[0].expires_at'"`) {
		t.Errorf("json escapes the resolution: %s", js.String())
	}
	var back Report
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Findings) != 3 || back.Findings[2] != r.Findings[2] || back.Summary != (Summary{Status: Crit, OK: 1, Warn: 1, Crit: 1}) {
		t.Errorf("json round trip: %+v", back)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(js.String()), &got); err != nil {
		t.Fatal(err)
	}
	first := got["findings"].([]any)[0].(map[string]any)
	for _, k := range []string{"check", "status", "detail", "resolution"} {
		if _, ok := first[k]; !ok {
			t.Errorf("finding lacks %q: %v", k, first)
		}
	}
	sum := got["summary"].(map[string]any)
	if sum["status"] != "CRIT" || sum["ok"] != 1.0 || sum["warn"] != 1.0 || sum["crit"] != 1.0 {
		t.Errorf("summary %v", sum)
	}

	empty := NewReport(nil)
	js.Reset()
	_ = empty.WriteJSON(&js)
	if js.String() != `{"findings":[],"summary":{"status":"OK","ok":0,"warn":0,"crit":0}}`+"\n" || empty.ExitCode() != 0 {
		t.Errorf("empty report %s exit %d", js.String(), empty.ExitCode())
	}
	warnOnly := NewReport([]Finding{{Status: OK}, {Status: Warn}})
	if warnOnly.Summary.Status != Warn || warnOnly.ExitCode() != 0 {
		t.Errorf("warnings only: %+v exit %d", warnOnly.Summary, warnOnly.ExitCode())
	}
}

func TestExpiryStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name      string
		left      time.Duration
		life      time.Duration
		threshold time.Duration
		want      Status
	}{
		{name: "ok/runbook ttl just issued", left: time.Hour, life: time.Hour, threshold: time.Hour, want: OK},
		{name: "ok/runbook ttl at renewal point", left: 30 * time.Minute, life: time.Hour, threshold: time.Hour, want: OK},
		{name: "ok/runbook ttl inside the grace", left: 25 * time.Minute, life: time.Hour, threshold: time.Hour, want: OK},
		{name: "warn/runbook ttl not renewed", left: 20 * time.Minute, life: time.Hour, threshold: time.Hour, want: Warn},
		{name: "ok/past renewal point but above threshold", left: 20 * time.Minute, life: time.Hour, threshold: 10 * time.Minute, want: OK},
		{name: "ok/short ttl under threshold before renewal point", left: 18 * time.Second, life: 40 * time.Second, threshold: 20 * time.Second, want: OK},
		{name: "warn/short ttl not renewed", left: 14 * time.Second, life: 40 * time.Second, threshold: 20 * time.Second, want: Warn},
		{name: "warn/short ttl long not renewed", left: 10 * time.Second, life: 40 * time.Second, threshold: 20 * time.Second, want: Warn},
		{name: "ok/short ttl not renewed but above threshold", left: 14 * time.Second, life: 40 * time.Second, threshold: 10 * time.Second, want: OK},
		{name: "crit/expired", left: 0, life: time.Hour, threshold: time.Hour, want: Crit},
		{name: "crit/long expired", left: -time.Hour, life: time.Hour, threshold: time.Second, want: Crit},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExpiryStatus(now.Add(tt.left), tt.life, tt.threshold, now); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
