package workloadapi_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
)

// TestHTTPX509SVID: the runbook's HTTP/1.1 endpoint on the Workload API
// socket answers the caller's SVIDs as JSON, with the certificate chain
// only: no private key in the body.
func TestHTTPX509SVID(t *testing.T) {
	e := newEnv(t)
	web := entry("a", "spiffe://neural-hive.local/workload/web", mySelector())
	web.Hint = "web"
	e.addIdentity(web, entry("b", "spiffe://neural-hive.local/workload/db", mySelector()))
	hc := e.httpClient()

	resp, err := hc.Get("http://localhost/v1/spiffe/workload/x509svid")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// Exactly the documented keys; expires_at a number.
	var raw struct {
		SVIDs []map[string]json.RawMessage `json:"svids"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.SVIDs) != 2 {
		t.Fatalf("svids = %d, want 2", len(raw.SVIDs))
	}
	for _, s := range raw.SVIDs {
		if len(s) != 4 || s["spiffe_id"] == nil || s["expires_at"] == nil || s["x509_svid"] == nil || s["hint"] == nil {
			t.Fatalf("svid keys = %v, want spiffe_id, expires_at, x509_svid, hint", s)
		}
		var n int64
		if err := json.Unmarshal(s["expires_at"], &n); err != nil {
			t.Fatalf("expires_at is not a number: %s", s["expires_at"])
		}
	}

	var doc struct {
		SVIDs []struct {
			SPIFFEID  string `json:"spiffe_id"`
			ExpiresAt int64  `json:"expires_at"`
			X509SVID  string `json:"x509_svid"`
			Hint      string `json:"hint"`
		} `json:"svids"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	first := doc.SVIDs[0]
	if first.SPIFFEID != "spiffe://neural-hive.local/workload/web" || first.Hint != "web" {
		t.Fatalf("first svid = %+v", first)
	}
	var certs []*x509.Certificate
	rest := []byte(first.X509SVID)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q in x509_svid", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 || certs[0].URIs[0].String() != first.SPIFFEID || certs[0].NotAfter.Unix() != first.ExpiresAt {
		t.Fatalf("x509_svid chain = %d certs", len(certs))
	}

	// No key material anywhere in the body: no key PEM, and no SVID's
	// PKCS#8 key among the decoded bytes of any svid.
	if bytes.Contains(body, []byte("PRIVATE KEY")) {
		t.Fatalf("body carries a private key PEM: %s", body)
	}
	var all []byte
	for _, s := range doc.SVIDs {
		rest := []byte(s.X509SVID)
		for {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				t.Fatalf("PEM block %q in x509_svid", blk.Type)
			}
			all = append(all, blk.Bytes...)
		}
	}
	for _, id := range e.cache.Snapshot([]string{mySelector()}).Identities {
		der := id.SVID.PrivateKeyDER()
		if bytes.Contains(all, der) || bytes.Contains(body, []byte(base64.StdEncoding.EncodeToString(der)[:32])) {
			t.Fatal("body contains a private key")
		}
	}
}

// TestHTTPRefusals: 403 JSON for a caller without identity, 405 for other
// methods, 404 JSON elsewhere.
func TestHTTPRefusals(t *testing.T) {
	e := newEnv(t)
	e.addIdentity(entry("a", "spiffe://neural-hive.local/x", otherSelector()))
	hc := e.httpClient()
	for _, tt := range []struct {
		name   string
		method string
		path   string
		code   int
		msg    string
	}{
		{name: "fail/no identity", method: http.MethodGet, path: "/v1/spiffe/workload/x509svid", code: http.StatusForbidden, msg: "no identity issued"},
		{name: "fail/post", method: http.MethodPost, path: "/v1/spiffe/workload/x509svid", code: http.StatusMethodNotAllowed, msg: "method not allowed"},
		{name: "fail/unknown path", method: http.MethodGet, path: "/v1/other", code: http.StatusNotFound, msg: "not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://localhost"+tt.path, nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error string `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if resp.StatusCode != tt.code || body.Error != tt.msg {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body.Error, tt.code, tt.msg)
			}
		})
	}
}

// TestHTTPAndGRPCShareSocket: both protocols on one socket, many times,
// interleaved.
func TestHTTPAndGRPCShareSocket(t *testing.T) {
	e := newEnv(t)
	e.addIdentity(entry("a", "spiffe://neural-hive.local/x", mySelector()))
	hc := e.httpClient()
	c := e.client()
	for range 20 {
		resp, err := hc.Get("http://localhost/v1/spiffe/workload/x509svid")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP: %v", err)
		}
		resp.Body.Close()
		s, err := c.FetchX509SVID(withHeader(testCtx(t)), &workload.X509SVIDRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		if err != nil {
			t.Fatalf("gRPC: %v", err)
		}
	}
}

// TestRunbookCurl runs the runbook's line verbatim (with the test socket)
// when curl and jq are installed.
func TestRunbookCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq not installed")
	}
	e := newEnv(t)
	e.addIdentity(entry("a", "spiffe://neural-hive.local/x", mySelector()))
	out, err := exec.Command("sh", "-c", "curl -s --unix-socket "+e.sock+" http://localhost/v1/spiffe/workload/x509svid | jq '.svids[0].expires_at'").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := e.cache.Snapshot([]string{mySelector()}).Identities[0].SVID.NotAfter.Unix()
	if got := strings.TrimSpace(string(out)); got != itoa(want) {
		t.Fatalf("curl | jq = %q, want %d", got, want)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
