package entry_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/api/entry"
	"github.com/neural-hive/hive-identity/internal/server/authz"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
	"github.com/neural-hive/hive-identity/internal/server/datastore/datastoretest"
	"github.com/neural-hive/hive-identity/internal/server/index"
)

var _ entry.Authorized = (*index.Index)(nil)

const agentA = "spiffe://example.org/spire/agent/join_token/a"

// serveAsAgent serves svc over a unix socket with every call made as the
// agent agentA (the endpoints' mTLS authentication is tested there).
func serveAsAgent(t *testing.T, svc *entry.Service) entryv1.EntryClient {
	t.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	caller := authz.Caller{ID: spiffeid.RequireFromString(agentA), Role: authz.RoleAgent}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(api.WithCaller(ctx, caller), req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &callerStream{ServerStream: ss, ctx: api.WithCaller(ss.Context(), caller)})
		}),
	)
	svc.Register(srv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return entryv1.NewEntryClient(conn)
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

func agentEntries(n int) []*datastore.Entry {
	var es []*datastore.Entry
	for i := range n {
		es = append(es, &datastore.Entry{ID: fmt.Sprintf("e%d", i), SPIFFEID: fmt.Sprintf("spiffe://example.org/w/%d", i),
			ParentID: agentA, RevisionNumber: int64(i), Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1"}}})
	}
	es = append(es, &datastore.Entry{ID: "other", SPIFFEID: "spiffe://example.org/w/other",
		ParentID: "spiffe://example.org/spire/agent/join_token/b", Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1"}}})
	return es
}

func authorizedClient(t *testing.T, n, pageSize int) entryv1.EntryClient {
	t.Helper()
	idx := index.New("spiffe://example.org/spire/server")
	idx.Load(agentEntries(n), nil, 1)
	svc, err := entry.New(entry.Config{TrustDomain: td, Store: datastoretest.OpenSQLite(t), Authorized: idx, EntryPageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	return serveAsAgent(t, svc)
}

func ids(es []*types.Entry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Id)
	}
	return strings.Join(out, ",")
}

// T2: an agent sees only its own entries.
func TestGetAuthorizedEntries(t *testing.T) {
	c := authorizedClient(t, 3, 500)
	resp, err := c.GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{OutputMask: &types.EntryMask{SpiffeId: true}})
	if err != nil {
		t.Fatal(err)
	}
	if ids(resp.Entries) != "e0,e1,e2" || resp.Entries[0].SpiffeId == nil || resp.Entries[0].ParentId != nil {
		t.Fatalf("entries %v", resp.Entries)
	}
}

func TestSyncAuthorizedEntries_OnePage(t *testing.T) {
	c := authorizedClient(t, 3, 500)
	stream, err := c.SyncAuthorizedEntries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || ids(resp.Entries) != "e0,e1,e2" || resp.More || len(resp.EntryRevisions) != 0 {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestSyncAuthorizedEntries_Sparse(t *testing.T) {
	c := authorizedClient(t, 5, 2)
	stream, err := c.SyncAuthorizedEntries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{OutputMask: &types.EntryMask{RevisionNumber: true, SpiffeId: true}}); err != nil {
		t.Fatal(err)
	}
	var revs []string
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.EntryRevisions) > 2 || len(resp.Entries) != 0 {
			t.Fatalf("page %v", resp)
		}
		for _, r := range resp.EntryRevisions {
			revs = append(revs, fmt.Sprintf("%s@%d", r.Id, r.RevisionNumber))
		}
		if !resp.More {
			break
		}
	}
	if strings.Join(revs, ",") != "e0@0,e1@1,e2@2,e3@3,e4@4" {
		t.Fatalf("revisions %v", revs)
	}
	// Ask for some entries, one unknown and one of another agent (T2).
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{Ids: []string{"e4", "nope", "other", "e1", "e2"}}); err != nil {
		t.Fatal(err)
	}
	var got []*types.Entry
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Entries) > 2 {
			t.Fatalf("page of %d", len(resp.Entries))
		}
		got = append(got, resp.Entries...)
		if !resp.More {
			break
		}
	}
	if ids(got) != "e1,e2,e4" || got[0].ParentId != nil || got[0].RevisionNumber != 1 {
		t.Fatalf("entries %v", got)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncAuthorizedEntries_Refusals(t *testing.T) {
	c := authorizedClient(t, 3, 500)
	for _, tt := range []struct {
		name string
		req  *entryv1.SyncAuthorizedEntriesRequest
		msg  string
	}{
		{name: "fail/IDs on the first request", req: &entryv1.SyncAuthorizedEntriesRequest{Ids: []string{"e1"}}, msg: "specifying IDs on initial request is not supported"},
		{name: "fail/revision masked", req: &entryv1.SyncAuthorizedEntriesRequest{OutputMask: &types.EntryMask{SpiffeId: true}}, msg: "revision number cannot be masked"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := c.SyncAuthorizedEntries(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tt.req); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tt.msg {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestPushWatch(t *testing.T) {
	idx := index.New("spiffe://example.org/spire/server")
	idx.Load(agentEntries(1), nil, 7)
	p, err := entry.NewPush(idx)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(api.WithCaller(ctx, authz.Caller{ID: spiffeid.RequireFromString(agentA), Role: authz.RoleAgent}))
	defer cancel()
	revs := make(chan int64, 10)
	done := make(chan error, 1)
	go func() { done <- p.Watch(actx, func(r int64) error { revs <- r; return nil }) }()
	if r := <-revs; r != 7 {
		t.Fatalf("first revision %d", r)
	}
	idx.Update(index.Update{Entries: map[string]*datastore.Entry{"new": {ID: "new", SPIFFEID: "spiffe://example.org/w/new",
		ParentID: agentA, Selectors: []datastore.Selector{{Type: "unix", Value: "uid:9"}}}}, Revision: 8})
	if r := <-revs; r != 8 {
		t.Fatalf("revision after a change %d", r)
	}
	// T3: eviction ends the stream at once.
	idx.CloseAgent(agentA)
	if err := <-done; status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after eviction: %v", err)
	}
}
