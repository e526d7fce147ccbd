package ca

import (
	"context"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The CA takes SPIFFE IDs only as spiffeid.ID values, so every string a
// caller holds must go through go-spiffe's strict parser before it can reach
// SignX509SVID or SignJWTSVID. These tests pin that parser's refusals (the
// issuance policy of SPIFFE-ID §2) and check that accepted IDs come out of
// the CA byte for byte.

// TestSPIFFEID_Refusals covers ID-01..ID-11 and ID-13: each string is
// refused by the parser and therefore can never be issued.
func TestSPIFFEID_Refusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		id   string
	}{
		{name: "fail/ID-01 http scheme", id: "http://example.org/w"},
		{name: "fail/ID-01 spiffe:/ single slash", id: "spiffe:/example.org/w"},
		{name: "fail/ID-01 spiffe: no slashes", id: "spiffe:example.org/w"},
		{name: "fail/ID-01 uppercase scheme", id: "SPIFFE://example.org/w"},
		{name: "fail/ID-02 empty trust domain", id: "spiffe:///w"},
		{name: "fail/ID-03 query", id: "spiffe://example.org/w?q=1"},
		{name: "fail/ID-03 fragment", id: "spiffe://example.org/w#f"},
		{name: "fail/ID-03 bare ?", id: "spiffe://example.org/w?"},
		{name: "fail/ID-03 bare #", id: "spiffe://example.org/w#"},
		{name: "fail/ID-04 userinfo", id: "spiffe://user@example.org/w"},
		{name: "fail/ID-04 port", id: "spiffe://example.org:8080/w"},
		{name: "fail/ID-04 empty port", id: "spiffe://example.org:/w"},
		{name: "fail/ID-05 uppercase trust domain", id: "spiffe://Example.org/w"},
		{name: "fail/ID-06 percent-encoded host", id: "spiffe://exa%6Dple.org/w"},
		{name: "fail/ID-07 IPv6 trust domain", id: "spiffe://[::1]/w"},
		{name: "fail/ID-08 %2e in path", id: "spiffe://example.org/%2e"},
		{name: "fail/ID-08 %2F in path", id: "spiffe://example.org/a%2Fb"},
		{name: "fail/ID-08 %41 in path", id: "spiffe://example.org/%41"},
		{name: "fail/ID-09 empty segment", id: "spiffe://example.org/a//b"},
		{name: "fail/ID-09 dot segment", id: "spiffe://example.org/a/./b"},
		{name: "fail/ID-09 dot-dot segment", id: "spiffe://example.org/a/../b"},
		{name: "fail/ID-10 trailing slash", id: "spiffe://example.org/a/"},
		{name: "fail/ID-10 root with slash", id: "spiffe://example.org/"},
		{name: "fail/ID-11 colon", id: "spiffe://example.org/a:b"},
		{name: "fail/ID-11 at", id: "spiffe://example.org/a@b"},
		{name: "fail/ID-11 brackets", id: "spiffe://example.org/a[b]"},
		{name: "fail/ID-11 sub-delims", id: "spiffe://example.org/a!b"},
		{name: "fail/ID-11 tilde", id: "spiffe://example.org/a~b"},
		{name: "fail/ID-11 space", id: "spiffe://example.org/a b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if id, err := spiffeid.FromString(tt.id); err == nil {
				t.Fatalf("%q parsed as %q; the CA could be asked to issue it", tt.id, id)
			}
		})
	}
}

// TestSPIFFEID_TrustDomainBytes loops over all 256 byte values in a trust
// domain name (ID-05): only [a-z0-9._-] are accepted.
func TestSPIFFEID_TrustDomainBytes(t *testing.T) {
	for b := range 256 {
		c := byte(b)
		want := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		_, err := spiffeid.TrustDomainFromString("td" + string([]byte{c}) + "x")
		if got := err == nil; got != want {
			t.Errorf("ID-05: byte %#x accepted=%v, want %v (%v)", c, got, want, err)
		}
	}
}

// TestSPIFFEID_PathBytes loops over all 256 byte values in a path segment
// (ID-11): only [a-zA-Z0-9._-] are accepted, and the CA issues each accepted
// ID unchanged in X509-SVIDs and JWT-SVIDs (ID-13: the path is case-sensitive).
func TestSPIFFEID_PathBytes(t *testing.T) {
	env := newTestEnv(t, nil)
	key := newECKey(t)
	for b := range 256 {
		c := byte(b)
		// '/' separates segments, so "p/q" is two valid segments.
		want := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/'
		s := "spiffe://example.org/p" + string([]byte{c}) + "q"
		id, err := spiffeid.FromString(s)
		if got := err == nil; got != want {
			t.Errorf("ID-11: byte %#x accepted=%v, want %v (%v)", c, got, want, err)
			continue
		}
		if err != nil {
			continue
		}
		chain, err := env.ca.SignX509SVID(context.Background(), X509SVIDParams{SPIFFEID: id, PublicKey: &key.PublicKey})
		requireNoError(t, err)
		if got := chain[0].URIs[0].String(); got != s {
			t.Errorf("ID-13: issued %q for %q", got, s)
		}
	}
}

// TestSPIFFEID_Accepted covers IDs the spec allows, issued unchanged:
// ID-07 (an IPv4 dotted quad is a valid trust domain name) and ID-13
// (scheme and trust domain are lowercase; the path keeps its case).
func TestSPIFFEID_Accepted(t *testing.T) {
	for _, tt := range []struct {
		name string
		td   string
		id   string
	}{
		{name: "ok/ID-07 IPv4 trust domain", td: "10.0.0.1", id: "spiffe://10.0.0.1/w"},
		{name: "ok/ID-13 mixed-case path kept", td: "example.org", id: "spiffe://example.org/NS/Default/SA/Api"},
		{name: "ok/ID-09 dots inside a segment", td: "example.org", id: "spiffe://example.org/a.b/..c/d.."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			td := spiffeid.RequireTrustDomainFromString(tt.td)
			env := newTestEnv(t, func(c *Config) { c.TrustDomain = td })
			key := newECKey(t)
			chain := signSVID(t, env.ca, tt.id, &key.PublicKey)
			if got := chain[0].URIs[0].String(); got != tt.id {
				t.Fatalf("issued %q, want %q", got, tt.id)
			}
			token, err := env.ca.SignJWTSVID(context.Background(), JWTSVIDParams{SPIFFEID: mustID(t, tt.id), Audience: []string{"a"}})
			requireNoError(t, err)
			if claims := jwtClaims(t, token); claims["sub"] != tt.id {
				t.Fatalf("JWT sub %v, want %q", claims["sub"], tt.id)
			}
		})
	}
}
