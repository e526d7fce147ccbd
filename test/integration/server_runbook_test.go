package integration

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var entryIDLine = regexp.MustCompile(`(?m)^Entry ID\s+: (\S+)$`)

// TestRunbook_Server runs the runbook's spire-server commands verbatim (less the
// kubectl exec prefix, plus -socketPath) against the real binary.
func TestRunbook_Server(t *testing.T) {
	s := newServer(t, serverOptions{})

	// "Verificar Saude do SPIRE Server"
	out, errOut, code := s.cli("healthcheck")
	if code != 0 || out != "Server is healthy.\n" {
		t.Fatalf("healthcheck: code %d stdout %q stderr %q", code, out, errOut)
	}

	// "Criar Nova Entry SPIFFE" / "Se entry SPIFFE ausente: Recriar entry"
	out, errOut, code = s.cli("entry", "create",
		"-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents",
		"-parentID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent",
		"-selector", "k8s:ns:neural-hive-execution",
		"-selector", "k8s:sa:worker-agents",
		"-ttl", "3600")
	if code != 0 {
		t.Fatalf("entry create: code %d stderr %q", code, errOut)
	}
	for _, want := range []string{
		"SPIFFE ID        : spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents\n",
		"Parent ID        : spiffe://neural-hive.local/ns/spire-system/sa/spire-agent\n",
		"X509-SVID TTL    : 3600\n",
		"JWT-SVID TTL     : 3600\n",
		"Selector         : k8s:ns:neural-hive-execution\n",
		"Selector         : k8s:sa:worker-agents\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("entry create output lacks %q:\n%s", want, out)
		}
	}
	m := entryIDLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Entry ID in:\n%s", out)
	}
	entryID := m[1]

	// The same entry again is refused and changes nothing.
	_, errOut, code = s.cli("entry", "create",
		"-spiffeID", "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents",
		"-parentID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent",
		"-selector", "k8s:ns:neural-hive-execution",
		"-selector", "k8s:sa:worker-agents",
		"-ttl", "3600")
	if code != 1 || !strings.Contains(errOut, "AlreadyExists") {
		t.Fatalf("duplicate entry: code %d stderr %q", code, errOut)
	}

	// "Listar Entries SPIFFE" and `entry show | grep worker-agents`
	out, _, code = s.cli("entry", "show")
	if code != 0 || !strings.HasPrefix(out, "Found 1 entry\n") {
		t.Fatalf("entry show: code %d\n%s", code, out)
	}
	grep := exec.Command("grep", "worker-agents")
	grep.Stdin = strings.NewReader(out)
	g, err := grep.Output()
	if err != nil || !strings.Contains(string(g), "spiffe://neural-hive.local/ns/neural-hive-execution/sa/worker-agents") {
		t.Fatalf("grep worker-agents: %v %q", err, g)
	}

	// "Rotacionar SPIRE Server Root CA" step 1: bundle show > spire-bundle-backup.pem
	out, _, code = s.cli("bundle", "show")
	if code != 0 {
		t.Fatalf("bundle show: code %d", code)
	}
	backup := filepath.Join(t.TempDir(), "spire-bundle-backup.pem")
	if err := os.WriteFile(backup, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(backup)
	block, rest := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("bundle show is not PEM:\n%s", out)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA || len(ca.URIs) != 1 || ca.URIs[0].String() != "spiffe://neural-hive.local" {
		t.Fatalf("bundle certificate: err %v, %+v", err, ca)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("unexpected trailing content after the CA certificate: %q", rest)
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		if o, err := exec.Command("openssl", "x509", "-in", backup, "-noout", "-subject").CombinedOutput(); err != nil {
			t.Fatalf("openssl cannot parse the backup: %v %s", err, o)
		}
	}

	// "Remover Entry SPIFFE"
	out, errOut, code = s.cli("entry", "delete", "-entryID", entryID)
	if code != 0 || out != "Deleted entry with ID: "+entryID+"\n\n\nDeleted 1 entries successfully" {
		t.Fatalf("entry delete: code %d stdout %q stderr %q", code, out, errOut)
	}
	out, _, _ = s.cli("entry", "count")
	if out != "0 registration entries\n" {
		t.Fatalf("entry count after delete: %q", out)
	}
	_, errOut, code = s.cli("entry", "delete", "-entryID", entryID)
	if code != 1 || !strings.Contains(errOut, "NotFound") {
		t.Fatalf("delete unknown entry: code %d stderr %q", code, errOut)
	}
}

// TestServer_RestartKeepsState: entries, join tokens and the CA survive a restart,
// and `bundle show` is byte-identical before and after.
func TestServer_RestartKeepsState(t *testing.T) {
	s := newServer(t, serverOptions{})
	bundleBefore, _, code := s.cli("bundle", "show")
	if code != 0 {
		t.Fatal("bundle show failed")
	}
	_, errOut, code := s.cli("entry", "create", "-spiffeID", "spiffe://neural-hive.local/ns/a/sa/b",
		"-parentID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent", "-selector", "unix:uid:1000")
	if code != 0 {
		t.Fatalf("entry create: %s", errOut)
	}
	tok, errOut, code := s.cli("token", "generate", "-spiffeID", "spiffe://neural-hive.local/node/n1", "-output", "json")
	if code != 0 {
		t.Fatalf("token generate: %s", errOut)
	}
	var token struct{ Value string }
	if err := json.Unmarshal([]byte(tok), &token); err != nil || token.Value == "" {
		t.Fatalf("token json %q: %v", tok, err)
	}
	entriesBefore, _, _ := s.cli("entry", "show", "-output", "json")

	s.stop()
	s.start()

	bundleAfter, _, _ := s.cli("bundle", "show")
	if bundleAfter != bundleBefore {
		t.Fatalf("bundle changed across restart:\nbefore:\n%s\nafter:\n%s", bundleBefore, bundleAfter)
	}
	entriesAfter, _, _ := s.cli("entry", "show", "-output", "json")
	if entriesAfter != entriesBefore {
		t.Fatalf("entries changed across restart:\n%s\n%s", entriesBefore, entriesAfter)
	}
}

// TestServer_Kill9LosesNoAcknowledgedEntry: SIGKILL during a burst of entry creates
// loses no entry whose create returned OK, on SQLite and on PostgreSQL.
func TestServer_Kill9LosesNoAcknowledgedEntry(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts func(t *testing.T) serverOptions
	}{
		{"sqlite", func(*testing.T) serverOptions { return serverOptions{} }},
		{"postgres", func(t *testing.T) serverOptions {
			return serverOptions{dbType: "postgres", dsn: postgresDSN(t)}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.opts(t))
			var (
				mu    sync.Mutex
				acked []string
				wg    sync.WaitGroup
			)
			const workers, perWorker = 4, 40
			killed := make(chan struct{})
			for w := range workers {
				wg.Go(func() {
					for i := range perWorker {
						id := fmt.Sprintf("burst-%d-%03d", w, i)
						out, _, code := s.cli("entry", "create", "-entryID", id,
							"-spiffeID", "spiffe://neural-hive.local/burst/"+id,
							"-parentID", "spiffe://neural-hive.local/ns/spire-system/sa/spire-agent",
							"-selector", "unix:uid:"+strconv.Itoa(i))
						if code == 0 && strings.Contains(out, "Entry ID         : "+id+"\n") {
							mu.Lock()
							acked = append(acked, id)
							n := len(acked)
							mu.Unlock()
							if n == workers*perWorker/2 {
								s.kill()
								close(killed)
							}
						}
					}
				})
			}
			wg.Wait()
			select {
			case <-killed:
			default:
				t.Fatalf("server was never killed: only %d creates acknowledged", len(acked))
			}
			s.start()
			out, errOut, code := s.cli("entry", "show", "-output", "json")
			if code != 0 {
				t.Fatalf("entry show after crash: %s", errOut)
			}
			for _, id := range acked {
				if !strings.Contains(out, `"id":"`+id+`"`) {
					t.Errorf("acknowledged entry %s lost after kill -9", id)
				}
			}
			t.Logf("%d acknowledged creates survived kill -9", len(acked))
		})
	}
}
