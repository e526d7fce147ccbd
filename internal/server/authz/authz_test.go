package authz_test

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	adminID = spiffeid.RequireFromPath(td, "/admin")
	entryID = spiffeid.RequireFromPath(td, "/entry-admin")
	dsID    = spiffeid.RequireFromPath(td, "/downstream")
	agentID = spiffeid.RequireFromPath(td, "/spire/agent/join_token/abc")
	otherID = spiffeid.RequireFromPath(td, "/workload")
	tcpAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
)

const (
	listEntries   = "/spire.api.server.entry.v1.Entry/ListEntries"
	syncEntries   = "/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries"
	attestAgent   = "/spire.api.server.agent.v1.Agent/AttestAgent"
	getBundle     = "/spire.api.server.bundle.v1.Bundle/GetBundle"
	getFederated  = "/spire.api.server.bundle.v1.Bundle/GetFederatedBundle"
	newDownstream = "/spire.api.server.svid.v1.SVID/NewDownstreamX509CA"
	healthCheck   = "/grpc.health.v1.Health/Check"
	getLogger     = "/spire.api.server.logger.v1.Logger/GetLogger"
)

func svid(id spiffeid.ID) *x509.Certificate {
	u, _ := url.Parse(id.String())
	return &x509.Certificate{URIs: []*url.URL{u}, SerialNumber: big.NewInt(7), NotAfter: time.Now().Add(time.Hour)}
}

func tcpCaller(id spiffeid.ID) authz.Caller {
	return authz.Caller{Addr: tcpAddr, ID: id, X509SVID: svid(id)}
}

func facts(t *testing.T) authz.Facts {
	return authz.Facts{
		AdminIDs: []spiffeid.ID{adminID},
		Entries: func(_ context.Context, id spiffeid.ID) (authz.EntryFlags, error) {
			switch id {
			case entryID:
				return authz.EntryFlags{Admin: true}, nil
			case dsID:
				return authz.EntryFlags{Downstream: true}, nil
			}
			return authz.EntryFlags{}, nil
		},
		Agent: func(_ context.Context, id spiffeid.ID, _ *x509.Certificate) error {
			if id == agentID {
				return nil
			}
			return &authz.DeniedError{Reason: authz.ReasonAgentNotAttested, Msg: "agent " + id.String() + " is not attested"}
		},
	}
}

// T13: the roles of SPIRE's policy: local, admin (config or entry), downstream, agent.
func TestAuthorize_T13_Roles(t *testing.T) {
	local := authz.Caller{Local: true, Addr: &net.UnixAddr{Name: "/x", Net: "unix"}}
	for _, tt := range []struct {
		name    string
		method  string
		caller  authz.Caller
		role    authz.Role
		wantErr string
	}{
		{name: "ok/local admin RPC", method: listEntries, caller: local, role: authz.RoleLocal},
		{name: "ok/local health", method: healthCheck, caller: local, role: authz.RoleLocal},
		{name: "ok/local logger", method: getLogger, caller: local, role: authz.RoleLocal},
		{name: "ok/admin ID from config over TCP", method: listEntries, caller: tcpCaller(adminID), role: authz.RoleAdmin},
		{name: "ok/admin entry over TCP", method: listEntries, caller: tcpCaller(entryID), role: authz.RoleAdmin},
		{name: "ok/downstream", method: newDownstream, caller: tcpCaller(dsID), role: authz.RoleDownstream},
		{name: "ok/agent RPC for agent", method: syncEntries, caller: tcpCaller(agentID), role: authz.RoleAgent},
		{name: "ok/agent may read federated bundles", method: getFederated, caller: tcpCaller(agentID), role: authz.RoleAgent},
		{name: "ok/anyone may attest", method: attestAgent, caller: authz.Caller{Addr: tcpAddr}, role: authz.RoleNone},
		{name: "ok/anyone may get the bundle", method: getBundle, caller: authz.Caller{Addr: tcpAddr}, role: authz.RoleNone},
		{name: "fail/local may not call agent RPCs", method: syncEntries, caller: local, wantErr: "authorization denied for method " + syncEntries},
		{name: "fail/TCP without SVID on admin RPC", method: listEntries, caller: authz.Caller{Addr: tcpAddr}, wantErr: "authorization denied for method " + listEntries},
		{name: "fail/non admin workload", method: listEntries, caller: tcpCaller(otherID), wantErr: "authorization denied for method " + listEntries},
		{name: "fail/agent on admin RPC", method: listEntries, caller: tcpCaller(agentID), wantErr: "authorization denied for method " + listEntries},
		{name: "fail/admin on agent RPC is not an agent", method: syncEntries, caller: tcpCaller(adminID), wantErr: "is not attested"},
		{name: "fail/TCP health", method: healthCheck, caller: tcpCaller(adminID), wantErr: "authorization denied"},
		{name: "fail/TCP logger", method: getLogger, caller: tcpCaller(adminID), wantErr: "authorization denied"},
		{name: "fail/admin is not downstream", method: newDownstream, caller: tcpCaller(adminID), wantErr: "authorization denied"},
		{name: "fail/agent RPC without SVID", method: syncEntries, caller: authz.Caller{Addr: tcpAddr}, wantErr: "caller does not have an X509-SVID"},
		{name: "fail/unknown method", method: "/x.y/Z", caller: local, wantErr: "authorization denied for method /x.y/Z"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			role, err := authz.Authorize(context.Background(), tt.method, tt.caller, facts(t))
			if tt.wantErr != "" {
				if !errors.Is(err, authz.ErrDenied) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want denied %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || role != tt.role {
				t.Fatalf("role, err = %v, %v; want %v", role, err, tt.role)
			}
		})
	}
}

func TestAuthorize_LookupFailureIsNotADenial(t *testing.T) {
	f := authz.Facts{Entries: func(context.Context, spiffeid.ID) (authz.EntryFlags, error) {
		return authz.EntryFlags{}, errors.New("db down")
	}}
	_, err := authz.Authorize(context.Background(), listEntries, tcpCaller(otherID), f)
	if err == nil || errors.Is(err, authz.ErrDenied) {
		t.Fatalf("err = %v, want a lookup failure", err)
	}
}

func TestAuthorize_AdminIDsSkipEntryLookup(t *testing.T) {
	f := authz.Facts{AdminIDs: []spiffeid.ID{adminID}, Entries: func(context.Context, spiffeid.ID) (authz.EntryFlags, error) {
		t.Fatal("entries looked up for a configured admin")
		return authz.EntryFlags{}, nil
	}}
	if _, err := authz.Authorize(context.Background(), listEntries, tcpCaller(adminID), f); err != nil {
		t.Fatal(err)
	}
}

func TestRuleFor_EveryServiceMethodHasARule(t *testing.T) {
	for _, m := range []string{
		"/spire.api.server.svid.v1.SVID/MintX509SVID", "/spire.api.server.svid.v1.SVID/BatchNewX509SVID",
		"/spire.api.server.agent.v1.Agent/CreateJoinToken", "/spire.api.server.agent.v1.Agent/RenewAgent",
		"/spire.api.server.trustdomain.v1.TrustDomain/RefreshBundle",
		"/spire.api.server.localauthority.v1.LocalAuthority/RevokeX509UpstreamAuthority",
		"/spire.api.server.bundle.v1.Bundle/PublishJWTAuthority", "/hive.push.v1.Push/Watch",
	} {
		if _, ok := authz.RuleFor(m); !ok {
			t.Errorf("no rule for %s", m)
		}
	}
}

// T3: stale, banned, evicted or expired agent SVIDs are refused.
func TestCheckAgent_T3(t *testing.T) {
	now := time.Now()
	cert := svid(agentID)
	cert.SerialNumber = big.NewInt(42)
	expired := svid(agentID)
	expired.SerialNumber = big.NewInt(42)
	expired.NotAfter = now.Add(-time.Second)
	node := func(cur, next string) *datastore.AttestedNode {
		return &datastore.AttestedNode{SPIFFEID: agentID.String(), CertSerialNumber: cur, NewCertSerialNumber: next}
	}
	for _, tt := range []struct {
		name    string
		node    *datastore.AttestedNode
		cert    *x509.Certificate
		promote bool
		reason  authz.Reason
		wantErr string
	}{
		{name: "ok/current serial", node: node("42", ""), cert: cert},
		{name: "ok/new serial after renewal", node: node("41", "42"), cert: cert, promote: true},
		{name: "fail/expired", node: node("42", ""), cert: expired, reason: authz.ReasonAgentExpired, wantErr: "SVID is expired"},
		{name: "fail/evicted", node: nil, cert: cert, reason: authz.ReasonAgentNotAttested, wantErr: "is not attested"},
		{name: "fail/banned", node: node("", ""), cert: cert, reason: authz.ReasonAgentBanned, wantErr: "is banned"},
		{name: "fail/rotated away", node: node("43", "44"), cert: cert, reason: authz.ReasonAgentNotActive, wantErr: `expected to have serial number "43"; has "42"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			promote, err := authz.CheckAgent(now, tt.node, tt.cert)
			if tt.wantErr == "" {
				if err != nil || promote != tt.promote {
					t.Fatalf("promote, err = %v, %v", promote, err)
				}
				return
			}
			var d *authz.DeniedError
			if !errors.As(err, &d) || d.Reason != tt.reason || !strings.Contains(d.Msg, tt.wantErr) {
				t.Fatalf("err = %v, want reason %v %q", err, tt.reason, tt.wantErr)
			}
		})
	}
}
