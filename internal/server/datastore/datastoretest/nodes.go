package datastoretest

import (
	"fmt"
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

func node(id string) *datastore.AttestedNode {
	return &datastore.AttestedNode{
		SPIFFEID:         td + "/spire/agent/join_token/" + id,
		AttestationType:  "join_token",
		CertSerialNumber: "serial-" + id,
		CertNotAfter:     1000,
	}
}

func testNodes(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	n1 := node("n1")
	n1.NewCertSerialNumber, n1.NewCertNotAfter, n1.CanReattest = "new-1", 2000, true

	t.Run("ok/create and fetch", func(t *testing.T) {
		in := *n1
		in.Selectors = sels("ignored:1")
		got, err := s.CreateAttestedNode(ctx, &in)
		requireNoError(t, err)
		requireEqual(t, got, n1, "created node")
		got, err = s.FetchAttestedNode(ctx, n1.SPIFFEID)
		requireNoError(t, err)
		want := *n1
		want.Selectors = []datastore.Selector{}
		requireEqual(t, got, &want, "fetched node")
	})
	for _, tt := range []struct {
		name   string
		node   *datastore.AttestedNode
		target error
		msg    string
	}{
		{"fail/create existing", node("n1"), datastore.ErrAlreadyExists, "already exists"},
		{"fail/create without SPIFFE ID", &datastore.AttestedNode{AttestationType: "x"}, datastore.ErrInvalidArgument, "missing its SPIFFE ID"},
		{"fail/create nil", nil, datastore.ErrInvalidArgument, "missing its SPIFFE ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, s)
			_, err := s.CreateAttestedNode(ctx, tt.node)
			requireError(t, err, tt.target, tt.msg)
			requireUnchanged(t, s, before)
		})
	}
	t.Run("fail/fetch unknown", func(t *testing.T) {
		_, err := s.FetchAttestedNode(ctx, td+"/nosuch")
		requireError(t, err, datastore.ErrNotFound, "not found")
	})

	t.Run("ok/selectors", func(t *testing.T) {
		requireNoError(t, s.SetNodeSelectors(ctx, n1.SPIFFEID, sels("k8s:pod:b", "aws:tag:x", "k8s:pod:a", "aws:tag:x")))
		got, err := s.GetNodeSelectors(ctx, n1.SPIFFEID)
		requireNoError(t, err)
		requireEqual(t, got, sels("aws:tag:x", "k8s:pod:a", "k8s:pod:b"), "selectors sorted, deduplicated")
		fetched, err := s.FetchAttestedNode(ctx, n1.SPIFFEID)
		requireNoError(t, err)
		requireEqual(t, fetched.Selectors, got, "fetched node selectors")
		requireNoError(t, s.SetNodeSelectors(ctx, n1.SPIFFEID, sels("k8s:pod:c")))
		got, err = s.GetNodeSelectors(ctx, n1.SPIFFEID)
		requireNoError(t, err)
		requireEqual(t, got, sels("k8s:pod:c"), "replaced selectors")
		// A node that has not attested yet may have selectors.
		requireNoError(t, s.SetNodeSelectors(ctx, td+"/pending", sels("x:1")))
		all, err := s.ListNodeSelectors(ctx)
		requireNoError(t, err)
		requireEqual(t, all, map[string][]datastore.Selector{n1.SPIFFEID: sels("k8s:pod:c"), td + "/pending": sels("x:1")}, "all node selectors")
		requireNoError(t, s.SetNodeSelectors(ctx, td+"/pending", nil))
		got, err = s.GetNodeSelectors(ctx, td+"/pending")
		requireNoError(t, err)
		requireEqual(t, got, []datastore.Selector{}, "cleared selectors")
		requireError(t, s.SetNodeSelectors(ctx, "", sels("x:1")), datastore.ErrInvalidArgument, "missing the SPIFFE ID")
	})

	t.Run("ok/update masks", func(t *testing.T) {
		repl := &datastore.AttestedNode{SPIFFEID: "", AttestationType: "other", CertSerialNumber: "s2", CertNotAfter: 3,
			NewCertSerialNumber: "ns2", NewCertNotAfter: 4, CanReattest: false}
		for _, tt := range []struct {
			name  string
			mask  *datastore.AttestedNodeMask
			apply func(n *datastore.AttestedNode)
		}{
			{"serial", &datastore.AttestedNodeMask{CertSerialNumber: true}, func(n *datastore.AttestedNode) { n.CertSerialNumber = "s2" }},
			{"not after", &datastore.AttestedNodeMask{CertNotAfter: true}, func(n *datastore.AttestedNode) { n.CertNotAfter = 3 }},
			{"new serial", &datastore.AttestedNodeMask{NewCertSerialNumber: true}, func(n *datastore.AttestedNode) { n.NewCertSerialNumber = "ns2" }},
			{"new not after", &datastore.AttestedNodeMask{NewCertNotAfter: true}, func(n *datastore.AttestedNode) { n.NewCertNotAfter = 4 }},
			{"can reattest", &datastore.AttestedNodeMask{CanReattest: true}, func(n *datastore.AttestedNode) { n.CanReattest = false }},
			{"nil mask", nil, func(n *datastore.AttestedNode) {
				n.CertSerialNumber, n.CertNotAfter, n.NewCertSerialNumber, n.NewCertNotAfter, n.CanReattest = "s2", 3, "ns2", 4, false
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				base := node("upd-" + tt.name)
				base.NewCertSerialNumber, base.NewCertNotAfter, base.CanReattest = "n", 5, true
				_, err := s.CreateAttestedNode(ctx, base)
				requireNoError(t, err)
				in := *repl
				in.SPIFFEID = base.SPIFFEID
				got, err := s.UpdateAttestedNode(ctx, &in, tt.mask)
				requireNoError(t, err)
				want := *base
				tt.apply(&want)
				requireEqual(t, got, &want, "updated node (attestation type never changes)")
				fetched, err := s.FetchAttestedNode(ctx, base.SPIFFEID)
				requireNoError(t, err)
				want.Selectors = []datastore.Selector{}
				requireEqual(t, fetched, &want, "fetched node")
				_, err = s.DeleteAttestedNode(ctx, base.SPIFFEID)
				requireNoError(t, err)
			})
		}
	})
	t.Run("fail/update unknown", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.UpdateAttestedNode(ctx, node("nosuch"), nil)
		requireError(t, err, datastore.ErrNotFound, "not found")
		_, err = s.UpdateAttestedNode(ctx, nil, nil)
		requireError(t, err, datastore.ErrInvalidArgument, "missing attested node")
		requireUnchanged(t, s, before)
	})

	t.Run("ok/delete removes the node and its selectors", func(t *testing.T) {
		got, err := s.DeleteAttestedNode(ctx, n1.SPIFFEID)
		requireNoError(t, err)
		want := *n1
		want.Selectors = sels("k8s:pod:c")
		requireEqual(t, got, &want, "deleted node")
		_, err = s.FetchAttestedNode(ctx, n1.SPIFFEID)
		requireError(t, err, datastore.ErrNotFound, "not found")
		sels, err := s.GetNodeSelectors(ctx, n1.SPIFFEID)
		requireNoError(t, err)
		requireEqual(t, len(sels), 0, "selectors left")
	})
	t.Run("fail/delete unknown", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.DeleteAttestedNode(ctx, n1.SPIFFEID)
		requireError(t, err, datastore.ErrNotFound, "not found")
		requireUnchanged(t, s, before)
	})
}

func testNodeFilters(t *testing.T, open func(testing.TB) *datastore.Store) {
	s := open(t)
	ctx := t.Context()
	mk := func(name, typ, serial, newSerial string, notAfter int64, reattest bool, selectors ...string) {
		n := &datastore.AttestedNode{SPIFFEID: td + "/agent/" + name, AttestationType: typ, CertSerialNumber: serial,
			NewCertSerialNumber: newSerial, CertNotAfter: notAfter, CanReattest: reattest}
		_, err := s.CreateAttestedNode(ctx, n)
		requireNoError(t, err)
		if len(selectors) > 0 {
			requireNoError(t, s.SetNodeSelectors(ctx, n.SPIFFEID, sels(selectors...)))
		}
	}
	mk("a", "join_token", "1", "", 100, false, "t:1")
	mk("ab", "x509pop", "2", "3", 200, true, "t:1", "t:2")
	mk("abc", "x509pop", "", "", 300, true, "t:1", "t:2", "t:3")
	mk("b", "join_token", "", "4", 400, false, "t:2")
	mk("none", "k8s_psat", "", "", 500, false)

	id := func(names ...string) []string {
		out := []string{}
		for _, n := range names {
			out = append(out, td+"/agent/"+n)
		}
		return out
	}
	bySel := func(m datastore.MatchBehavior, ss ...string) *datastore.BySelectors {
		return &datastore.BySelectors{Selectors: sels(ss...), Match: m}
	}
	yes, no := true, false
	for _, tt := range []struct {
		name string
		req  datastore.ListAttestedNodesRequest
		want []string
	}{
		{"ok/no filter", datastore.ListAttestedNodesRequest{}, id("a", "ab", "abc", "b", "none")},
		{"ok/by attestation type", datastore.ListAttestedNodesRequest{ByAttestationType: "x509pop"}, id("ab", "abc")},
		{"ok/banned", datastore.ListAttestedNodesRequest{ByBanned: &yes}, id("abc", "none")},
		{"ok/not banned", datastore.ListAttestedNodesRequest{ByBanned: &no}, id("a", "ab", "b")},
		{"ok/expires before", datastore.ListAttestedNodesRequest{ByExpiresBefore: 300}, id("a", "ab")},
		{"ok/can reattest", datastore.ListAttestedNodesRequest{ByCanReattest: &yes}, id("ab", "abc")},
		{"ok/cannot reattest", datastore.ListAttestedNodesRequest{ByCanReattest: &no}, id("a", "b", "none")},
		{"ok/selectors exact", datastore.ListAttestedNodesRequest{BySelectorMatch: bySel(datastore.MatchExact, "t:2", "t:1")}, id("ab")},
		{"ok/selectors subset", datastore.ListAttestedNodesRequest{BySelectorMatch: bySel(datastore.MatchSubset, "t:1", "t:2")}, id("a", "ab", "b")},
		{"ok/selectors superset", datastore.ListAttestedNodesRequest{BySelectorMatch: bySel(datastore.MatchSuperset, "t:2")}, id("ab", "abc", "b")},
		{"ok/selectors any", datastore.ListAttestedNodesRequest{BySelectorMatch: bySel(datastore.MatchAny, "t:3", "t:9")}, id("abc")},
		{"ok/combined", datastore.ListAttestedNodesRequest{ByAttestationType: "x509pop", ByBanned: &no,
			BySelectorMatch: bySel(datastore.MatchSuperset, "t:1")}, id("ab")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			got, token, err := s.ListAttestedNodes(ctx, &req)
			requireNoError(t, err)
			requireEqual(t, token, "", "token")
			var ids []string
			for _, n := range got {
				ids = append(ids, n.SPIFFEID)
				if n.Selectors != nil {
					t.Fatalf("selectors returned without FetchSelectors")
				}
			}
			if ids == nil {
				ids = []string{}
			}
			requireEqual(t, ids, tt.want, "nodes")
			n, err := s.CountAttestedNodes(ctx, &req)
			requireNoError(t, err)
			requireEqual(t, n, int32(len(tt.want)), "count")

			req.Pagination = &datastore.Pagination{PageSize: 2}
			req.FetchSelectors = true
			var paged []string
			for {
				page, token, err := s.ListAttestedNodes(ctx, &req)
				requireNoError(t, err)
				for _, n := range page {
					paged = append(paged, n.SPIFFEID)
					want, err := s.GetNodeSelectors(ctx, n.SPIFFEID)
					requireNoError(t, err)
					requireEqual(t, n.Selectors, want, "fetched selectors of "+n.SPIFFEID)
				}
				if token == "" {
					break
				}
			}
			if paged == nil {
				paged = []string{}
			}
			requireEqual(t, paged, tt.want, "paged nodes")
		})
	}
	for _, tt := range []struct {
		name   string
		req    datastore.ListAttestedNodesRequest
		target error
		msg    string
	}{
		{"fail/empty selector set", datastore.ListAttestedNodesRequest{BySelectorMatch: &datastore.BySelectors{}},
			datastore.ErrInvalidArgument, "cannot list by empty selectors set"},
		{"fail/unknown match", datastore.ListAttestedNodesRequest{BySelectorMatch: bySel(5, "t:1")},
			datastore.ErrInvalidArgument, "unhandled match behavior 5"},
		{"fail/malformed token", datastore.ListAttestedNodesRequest{Pagination: &datastore.Pagination{Token: "1x", PageSize: 1}},
			datastore.ErrInvalidArgument, `could not parse token "1x"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			_, _, err := s.ListAttestedNodes(ctx, &req)
			requireError(t, err, tt.target, tt.msg)
		})
	}
	t.Run("ok/many pages", func(t *testing.T) {
		for i := range 12 {
			_, err := s.CreateAttestedNode(ctx, node(fmt.Sprintf("p%02d", i)))
			requireNoError(t, err)
		}
		req := &datastore.ListAttestedNodesRequest{ByAttestationType: "join_token", Pagination: &datastore.Pagination{PageSize: 5}}
		var sizes []int
		for {
			page, token, err := s.ListAttestedNodes(ctx, req)
			requireNoError(t, err)
			sizes = append(sizes, len(page))
			if token == "" {
				break
			}
		}
		requireEqual(t, sizes, []int{5, 5, 4}, "page sizes")
	})
}
