package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// goldenCases maps every spire-server capture to its replay. Captures with
// no answers fail before any RPC (client-side validation).
func goldenCases() map[string]replay {
	selfAnswer := func(method string) replay { return replay{answers: answer(method, "self")} }
	refAnswer := func(method, name string) replay { return replay{answers: answer(method, "ref:"+name)} }
	errAnswer := func(method string) replay { return replay{answers: answer(method, "err")} }
	prep := func(f func(t *testing.T, r *replayRun)) replay { return replay{prepare: f} }
	created := replay{prepare: createFromCapture}
	clientSide := replay{}
	c := map[string]replay{
		// healthcheck
		"server_healthcheck_ok":                     {answers: healthy()},
		"server_healthcheck_verbose":                {answers: healthy()},
		"server_healthcheck_shallow":                {answers: healthy()},
		"server_healthcheck_shallow_verbose":        {answers: healthy()},
		"server_healthcheck_missing_socket":         clientSide,
		"server_healthcheck_missing_socket_verbose": clientSide,
		"server_healthcheck_default_socket_missing": {prepare: func(t *testing.T, _ *replayRun) {
			if _, err := os.Stat(defaultSocketPath); err == nil {
				t.Skip("a server listens on the default socket")
			}
		}},
		"server_healthcheck_after_rotation": {answers: healthy()},
		"server_healthcheck_after_shutdown": {prepare: func(t *testing.T, r *replayRun) {
			if err := os.Remove(filepath.Join(r.dir, "s", "api.sock")); err != nil {
				t.Fatal(err)
			}
		}},

		// bundle
		"bundle_show-pretty":             refAnswer("GetBundle", "bundle_show-json"),
		"bundle_show_spiffe-pretty":      refAnswer("GetBundle", "bundle_show-json"),
		"bundle_show-json":               selfAnswer("GetBundle"),
		"bundle_show_spiffe-json":        selfAnswer("GetBundle"),
		"bundle_count_before_set-pretty": prep(countFromCapture("CountBundles")),
		"bundle_list_empty-pretty":       {answers: answer("ListFederatedBundles", &bundlev1.ListFederatedBundlesResponse{})},
		"bundle_list_empty-json":         selfAnswer("ListFederatedBundles"),
		"bundle_set_pem-pretty":          bundleSet(codes.OK, "spiffe://partner.example", ""),
		"bundle_set_spiffe-json": {answers: answer("BatchSetFederatedBundle", "self"), check: func(t *testing.T, r *replayRun) {
			b := sent[*bundlev1.BatchSetFederatedBundleRequest](t, r, "BatchSetFederatedBundle").Bundle[0]
			if b.TrustDomain != "partner2.example" || len(b.X509Authorities) != 1 || len(b.JwtAuthorities) != 0 {
				t.Errorf("bundle sent: %v", b)
			}
		}},
		"bundle_set_own_td-pretty":     bundleSet(codes.InvalidArgument, "spiffe://neural-hive.local", "setting a federated bundle for the server's own trust domain is not allowed"),
		"bundle_set_missing_id-pretty": clientSide,
		"bundle_set_bad_pem-pretty":    clientSide,
		"bundle_set_pem_again-pretty":  bundleSet(codes.OK, "spiffe://partner.example", ""),
		"bundle_count-pretty":          refAnswer("CountBundles", "bundle_count-json"),
		"bundle_count-json":            selfAnswer("CountBundles"),
		"bundle_list-pretty":           refAnswer("ListFederatedBundles", "bundle_list-json"),
		"bundle_list_spiffe-pretty":    refAnswer("ListFederatedBundles", "bundle_list-json"),
		"bundle_list-json":             selfAnswer("ListFederatedBundles"),
		"bundle_list_id-pretty": {answers: answer("GetFederatedBundle", "ref:bundle_list_id-json"), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*bundlev1.GetFederatedBundleRequest](t, r, "GetFederatedBundle"),
				&bundlev1.GetFederatedBundleRequest{TrustDomain: "spiffe://partner.example"})
		}},
		"bundle_list_id-json":                      selfAnswer("GetFederatedBundle"),
		"bundle_list_id_unknown-pretty":            errAnswer("GetFederatedBundle"),
		"bundle_set_stdin-pretty":                  bundleSet(codes.OK, "spiffe://partner.example", ""),
		"bundle_delete-pretty":                     bundleDelete("spiffe://partner7.example", bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT),
		"bundle_delete-json":                       selfAnswer("BatchDeleteFederatedBundle"),
		"bundle_delete_referenced_restrict-pretty": refAnswer("BatchDeleteFederatedBundle", "bundle_delete_referenced_restrict-json"),
		"bundle_delete_referenced_restrict-json":   selfAnswer("BatchDeleteFederatedBundle"),
		"bundle_delete_unknown-pretty":             refAnswer("BatchDeleteFederatedBundle", "bundle_delete_unknown-json"),
		"bundle_delete_unknown-json":               selfAnswer("BatchDeleteFederatedBundle"),
		"bundle_delete_own_td-pretty":              refAnswer("BatchDeleteFederatedBundle", "bundle_delete_own_td-json"),
		"bundle_delete_own_td-json":                selfAnswer("BatchDeleteFederatedBundle"),
		"bundle_delete_missing_id-pretty":          clientSide,
		"bundle_delete_bad_mode-pretty":            clientSide,
		"bundle_delete_dissociate-pretty":          bundleDelete("spiffe://partner2.example", bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE),
		"bundle_show_after_rotation-pretty":        refAnswer("GetBundle", "bundle_show_after_rotation-json"),
		"bundle_show_after_rotation-json":          selfAnswer("GetBundle"),

		// token
		"token_generate-pretty":              joinToken("", 600),
		"token_generate-json":                selfAnswer("CreateJoinToken"),
		"token_generate_spiffeid-pretty":     joinToken("/node/agent-1", 3600),
		"token_generate_spiffeid-json":       selfAnswer("CreateJoinToken"),
		"token_generate_ttl-pretty":          joinToken("", 60),
		"token_generate_bad_spiffeid-pretty": clientSide,
		"token_generate_bad_spiffeid-json":   errAnswer("CreateJoinToken"),
		"token_generate_bad_ttl-pretty":      errAnswer("CreateJoinToken"),

		// entry create
		"entry_create_single-pretty":                      created,
		"entry_create_dns-pretty":                         created,
		"entry_create_admin-pretty":                       created,
		"entry_create_node-pretty":                        created,
		"entry_create_ttl-pretty":                         created,
		"entry_create_hint-pretty":                        created,
		"entry_create_expiry-pretty":                      created,
		"entry_create_downstream-pretty":                  created,
		"entry_create_entryid-pretty":                     created,
		"entry_create_federates-pretty":                   created,
		"entry_create_storesvid-pretty":                   created,
		"entry_create_allflags-pretty":                    created,
		"entry_create_duplicate-pretty":                   created,
		"entry_create_duplicate_entryid-pretty":           created,
		"entry_create_foreign_parent-pretty":              created,
		"entry_create_foreign_spiffeid-pretty":            created,
		"entry_create_unknown_federates-pretty":           created,
		"entry_create_node_and_parent-pretty":             created,
		"entry_create_bad_dns-pretty":                     created,
		"entry_create_storesvid_mixed_selectors-pretty":   created,
		"entry_create_batch-pretty":                       created,
		"entry_create_batch_partial-pretty":               created,
		"entry_create_batch_stdin-pretty":                 created,
		"entry_create_batch_with_flags-pretty":            created,
		"entry_create_batch_duplicate_all-pretty":         created,
		"entry_create_single-json":                        selfAnswer("BatchCreateEntry"),
		"entry_create_dns-json":                           selfAnswer("BatchCreateEntry"),
		"entry_create_admin-json":                         selfAnswer("BatchCreateEntry"),
		"entry_create_node-json":                          selfAnswer("BatchCreateEntry"),
		"entry_create_ttl-json":                           selfAnswer("BatchCreateEntry"),
		"entry_create_hint-json":                          selfAnswer("BatchCreateEntry"),
		"entry_create_expiry-json":                        selfAnswer("BatchCreateEntry"),
		"entry_create_downstream-json":                    selfAnswer("BatchCreateEntry"),
		"entry_create_entryid-json":                       selfAnswer("BatchCreateEntry"),
		"entry_create_federates-json":                     selfAnswer("BatchCreateEntry"),
		"entry_create_storesvid-json":                     selfAnswer("BatchCreateEntry"),
		"entry_create_allflags-json":                      selfAnswer("BatchCreateEntry"),
		"entry_create_duplicate-json":                     selfAnswer("BatchCreateEntry"),
		"entry_create_foreign_parent-json":                selfAnswer("BatchCreateEntry"),
		"entry_create_unknown_federates-json":             selfAnswer("BatchCreateEntry"),
		"entry_create_batch-json":                         selfAnswer("BatchCreateEntry"),
		"entry_create_batch_partial-json":                 selfAnswer("BatchCreateEntry"),
		"entry_create_bad_spiffeid_noscheme-pretty":       clientSide,
		"entry_create_bad_spiffeid_noscheme-json":         clientSide,
		"entry_create_bad_spiffeid_uppercase_td-pretty":   clientSide,
		"entry_create_bad_spiffeid_badchar-pretty":        clientSide,
		"entry_create_bad_spiffeid_emptyseg-pretty":       clientSide,
		"entry_create_bad_spiffeid_trailing_slash-pretty": clientSide,
		"entry_create_bad_spiffeid_dotseg-json":           clientSide,
		"entry_create_bad_parentid-pretty":                clientSide,
		"entry_create_bad_selector-pretty":                clientSide,
		"entry_create_bad_selector-json":                  clientSide,
		"entry_create_missing_selector-pretty":            clientSide,
		"entry_create_missing_spiffeid-pretty":            clientSide,
		"entry_create_missing_parent-pretty":              clientSide,
		"entry_create_negative_ttl-pretty":                clientSide,
		"entry_create_ttl_flag_removed-pretty":            {skip: "extension: -ttl exists here (see TestEntryTTLExtension)"},
		"entry_create_server_down_socket-pretty":          clientSide,
		"entry_create_data_and_flags-pretty":              clientSide,
		"entry_create_batch_malformed_id-pretty":          clientSide,
		"entry_create_batch_invalid_json-pretty":          clientSide,
		"entry_create_batch_missing_file-pretty":          clientSide,

		// entry count and show
		"entry_count-pretty": refAnswer("CountEntries", "entry_count-json"),
		"entry_count-json":   selfAnswer("CountEntries"),
		"entry_count_parent-pretty": {prepare: countFromCapture("CountEntries"), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*entryv1.CountEntriesRequest](t, r, "CountEntries"), &entryv1.CountEntriesRequest{
				Filter: &entryv1.CountEntriesRequest_Filter{ByParentId: hive("/node/agent-1"), ByDownstream: wrapperspb.Bool(false)},
			})
		}},
		"entry_count_selector_any-json": {answers: answer("CountEntries", "self"), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*entryv1.CountEntriesRequest](t, r, "CountEntries"), &entryv1.CountEntriesRequest{
				Filter: &entryv1.CountEntriesRequest_Filter{
					BySelectors:  &types.SelectorMatch{Selectors: []*types.Selector{{Type: "unix", Value: "uid:0"}}, Match: types.SelectorMatch_MATCH_ANY},
					ByDownstream: wrapperspb.Bool(false),
				},
			})
		}},
		"entry_count_nomatch-pretty": prep(countFromCapture("CountEntries")),
		"entry_show_all-pretty":      {prepare: listedReversed("entry_show_all-json"), check: checkListFilter(&entryv1.ListEntriesRequest_Filter{ByDownstream: wrapperspb.Bool(false)})},
		"entry_show_all-json":        prep(listedReversed("")),
		"entry_show_spiffeid-pretty": {prepare: listedReversed("entry_show_spiffeid-json"), check: checkListFilter(&entryv1.ListEntriesRequest_Filter{
			BySpiffeId: hive("/workload/gateway"), ByDownstream: wrapperspb.Bool(false),
		})},
		"entry_show_spiffeid-json":          prep(listedReversed("")),
		"entry_show_spiffeid_hinted-pretty": prep(listed),
		"entry_show_parentid-pretty":        prep(listedReversed("entry_show_parentid-json")),
		"entry_show_parentid-json":          prep(listedReversed("")),
		"entry_show_selector_exact-pretty": {prepare: listedReversed("entry_show_selector_exact-json"), check: checkListFilter(&entryv1.ListEntriesRequest_Filter{
			BySelectors: &types.SelectorMatch{
				Selectors: []*types.Selector{{Type: "unix", Value: "uid:0"}, {Type: "unix", Value: "gid:0"}},
				Match:     types.SelectorMatch_MATCH_EXACT,
			},
			ByDownstream: wrapperspb.Bool(false),
		})},
		"entry_show_selector_exact-json":       prep(listedReversed("")),
		"entry_show_selector_subset-pretty":    prep(listedReversed("entry_show_selector_subset-json")),
		"entry_show_selector_subset-json":      prep(listedReversed("")),
		"entry_show_selector_superset-pretty":  prep(listedReversed("entry_show_selector_superset-json")),
		"entry_show_selector_superset-json":    prep(listedReversed("")),
		"entry_show_selector_any-pretty":       prep(listedReversed("entry_show_selector_any-json")),
		"entry_show_selector_any-json":         prep(listedReversed("")),
		"entry_show_selector_default-pretty":   prep(listed),
		"entry_show_selector_badmode-pretty":   clientSide,
		"entry_show_selector_malformed-pretty": clientSide,
		"entry_show_entryid-pretty":            {prepare: getEntry("entry_show_entryid-json")},
		"entry_show_entryid-json":              {prepare: getEntry("entry_show_entryid-json")},
		"entry_show_entryid_unknown-pretty":    errAnswer("GetEntry"),
		"entry_show_entryid_unknown-json":      errAnswer("GetEntry"),
		"entry_show_hint-pretty": {prepare: listedReversed("entry_show_hint-json"), check: checkListFilter(&entryv1.ListEntriesRequest_Filter{
			ByHint: wrapperspb.String("gateway-v2"), ByDownstream: wrapperspb.Bool(false),
		})},
		"entry_show_hint-json": prep(listedReversed("")),
		"entry_show_downstream-pretty": {prepare: listedReversed("entry_show_downstream-json"), check: checkListFilter(&entryv1.ListEntriesRequest_Filter{
			ByDownstream: wrapperspb.Bool(true),
		})},
		"entry_show_downstream-json": prep(listedReversed("")),
		"entry_show_federateswith-pretty": {prepare: listed, check: checkListFilter(&entryv1.ListEntriesRequest_Filter{
			ByFederatesWith: &types.FederatesWithMatch{
				TrustDomains: []string{"spiffe://partner.example", "spiffe://partner2.example"},
				Match:        types.FederatesWithMatch_MATCH_EXACT,
			},
			ByDownstream: wrapperspb.Bool(false),
		})},
		"entry_show_federateswith_any-json": prep(listedReversed("")),
		"entry_show_nomatch-pretty":         prep(listedReversed("entry_show_nomatch-json")),
		"entry_show_nomatch-json":           prep(listedReversed("")),
		"entry_show_bad_spiffeid-pretty":    clientSide,
		"entry_show_combined-pretty":        prep(listed),
		"entry_show_after_dissociate-pretty": prep(func(t *testing.T, r *replayRun) {
			entries := expectedEntries(t, r.ref.stdout)
			entries[0].FederatesWith = []string{"partner.example"}
			r.api.on("ListEntries", &entryv1.ListEntriesResponse{Entries: entries})
		}),

		// entry update and delete
		"entry_update-pretty":                 prep(updateFromCapture),
		"entry_update-json":                   selfAnswer("BatchUpdateEntry"),
		"entry_update_partial_flags-pretty":   clientSide,
		"entry_update_unknown_id-pretty":      prep(updateFromCapture),
		"entry_update_unknown_id-json":        selfAnswer("BatchUpdateEntry"),
		"entry_update_missing_entryid-pretty": clientSide,
		"entry_update_bad_spiffeid-pretty":    clientSide,
		"entry_update_conflict-pretty":        prep(updateFromCapture),
		"entry_update_batch_partial-pretty":   prep(updateFromCapture),
		"entry_update_batch_partial-json":     selfAnswer("BatchUpdateEntry"),
		"entry_delete-pretty":                 prep(deleteFromCapture),
		"entry_delete-json":                   selfAnswer("BatchDeleteEntry"),
		"entry_delete_unknown_id-pretty":      prep(deleteFromCapture),
		"entry_delete_unknown_id-json":        selfAnswer("BatchDeleteEntry"),
		"entry_delete_missing_id-pretty":      clientSide,
		"entry_delete_file_partial-pretty":    prep(deleteFromCapture),
		"entry_delete_file_unknown-json":      selfAnswer("BatchDeleteEntry"),

		// x509 and jwt mint
		"x509_mint-pretty":                  {prepare: mintFromPretty("x509_mint-pretty"), check: checkMintCSR(0)},
		"x509_mint-json":                    {prepare: keyOfCapture, check: checkMintCSR(0)},
		"x509_mint_dns_ttl-pretty":          {prepare: mintFromPretty("x509_mint_dns_ttl-pretty"), check: checkMintCSR(600, "minted.neural-hive.local", "alt.neural-hive.local")},
		"x509_mint_write-pretty":            {prepare: mintFromPretty("x509_mint-pretty"), check: checkFiles("mint-out", "svid.pem", "key.pem", "bundle.pem")},
		"x509_mint_write-json":              {prepare: mintFromPretty("x509_mint-pretty")},
		"x509_mint_missing_spiffeid-pretty": clientSide,
		"x509_mint_foreign_td-pretty":       errAnswer("MintX509SVID"),
		"x509_mint_bad_spiffeid-pretty":     clientSide,
		"x509_mint_ttl_too_long-pretty":     {prepare: mintFromPretty("x509_mint_ttl_too_long-pretty"), check: checkMintCSR(360000)},
		"x509_mint_write_existing_dir-json": {
			prepare: func(t *testing.T, r *replayRun) {
				mintFromPretty("x509_mint-pretty")(t, r)
				if err := os.Mkdir(filepath.Join(r.dir, "mint-out-json"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			check: checkFiles("mint-out-json", "svid.pem", "key.pem", "bundle.pem"),
		},
		"jwt_mint-pretty":                  {prepare: jwtFromCapture(""), check: checkJWTRequest(0, "x")},
		"jwt_mint-json":                    {prepare: jwtClock, check: checkJWTRequest(0, "x")},
		"jwt_mint_multi_aud_ttl-pretty":    {prepare: jwtFromCapture(""), check: checkJWTRequest(120, "x", "y")},
		"jwt_mint_write-pretty":            {prepare: jwtFromCapture(jwtOfCapture("jwt_mint-pretty")), check: checkTokenFile},
		"jwt_mint_missing_audience-pretty": clientSide,
		"jwt_mint_missing_spiffeid-pretty": clientSide,
		"jwt_mint_ttl_too_long-pretty":     {prepare: jwtFromCapture(""), check: checkJWTRequest(172800, "x")},

		// agents
		"agent_count-pretty": refAnswer("CountAgents", "agent_count-json"),
		"agent_count-json":   selfAnswer("CountAgents"),
		"agent_list-pretty":  refAnswer("ListAgents", "agent_list-json"),
		"agent_list-json":    selfAnswer("ListAgents"),
		"agent_show-pretty": {answers: answer("GetAgent", "ref:agent_show-json"), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*agentv1.GetAgentRequest](t, r, "GetAgent"),
				&agentv1.GetAgentRequest{Id: hive("/spire/agent/join_token/1f67edb1-3c09-4ccf-87de-76c438c67842")})
		}},
		"agent_show-json":              selfAnswer("GetAgent"),
		"agent_show_unknown-pretty":    errAnswer("GetAgent"),
		"agent_show_unknown-json":      errAnswer("GetAgent"),
		"agent_show_missing_id-pretty": clientSide,
		"agent_ban-pretty": {answers: answer("BanAgent", &emptypb.Empty{}), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*agentv1.BanAgentRequest](t, r, "BanAgent"),
				&agentv1.BanAgentRequest{Id: hive("/spire/agent/join_token/23bd8ca8-4c30-4094-94a8-57a4decab1f1")})
		}},
		"agent_ban-json":           selfAnswer("BanAgent"),
		"agent_ban_unknown-pretty": errAnswer("BanAgent"),
		"agent_evict-pretty": {answers: answer("DeleteAgent", &emptypb.Empty{}), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*agentv1.DeleteAgentRequest](t, r, "DeleteAgent"),
				&agentv1.DeleteAgentRequest{Id: hive("/spire/agent/join_token/003fd805-f921-43f4-9b11-7c0e528761ee")})
		}},
		"agent_evict-json":                  selfAnswer("DeleteAgent"),
		"agent_evict_unknown-pretty":        errAnswer("DeleteAgent"),
		"agent_evict_unknown-json":          errAnswer("DeleteAgent"),
		"agent_evict_missing_id-pretty":     clientSide,
		"agent_show_banned-pretty":          refAnswer("GetAgent", "agent_show_banned-json"),
		"agent_show_banned-json":            selfAnswer("GetAgent"),
		"agent_list_after_ban_evict-pretty": prep(agentsAnswer(allAgents)),
		"agent_list_banned_true-pretty": {prepare: agentsAnswer(func(a []*types.Agent) []*types.Agent { return a[1:] }), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*agentv1.ListAgentsRequest](t, r, "ListAgents"), &agentv1.ListAgentsRequest{
				PageSize: 1000, Filter: &agentv1.ListAgentsRequest_Filter{ByBanned: wrapperspb.Bool(true)},
			})
		}},
		"agent_list_banned_false-json": selfAnswer("ListAgents"),
		"agent_list_attestation_type-pretty": {prepare: agentsAnswer(allAgents), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*agentv1.ListAgentsRequest](t, r, "ListAgents"), &agentv1.ListAgentsRequest{
				PageSize: 1000, Filter: &agentv1.ListAgentsRequest_Filter{ByAttestationType: "join_token"},
			})
		}},
		"agent_list_attestation_type_none-pretty": {answers: answer("ListAgents", &agentv1.ListAgentsResponse{})},
		"agent_list_can_reattest_false-pretty":    prep(agentsAnswer(allAgents)),
		"agent_list_expires_before-pretty":        clientSide,
		"agent_list_expires_before_bad-pretty":    clientSide,
		"agent_list_selector-pretty": {answers: answer("ListAgents", &agentv1.ListAgentsResponse{}), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*agentv1.ListAgentsRequest](t, r, "ListAgents"), &agentv1.ListAgentsRequest{
				PageSize: 1000, Filter: &agentv1.ListAgentsRequest_Filter{BySelectorMatch: &types.SelectorMatch{
					Selectors: []*types.Selector{{Type: "join_token", Value: "nosuch"}}, Match: types.SelectorMatch_MATCH_SUPERSET,
				}},
			})
		}},
		"agent_count_banned-pretty":            prep(countFromCapture("CountAgents")),
		"agent_count_after-json":               selfAnswer("CountAgents"),
		"agent_purge_dryrun-pretty":            prep(agentsAnswer(allAgents)),
		"agent_purge_dryrun-json":              prep(agentsAnswer(allAgents)),
		"agent_purge_dryrun_expiredfor-pretty": prep(agentsAnswer(allAgents)),
		"agent_purge-pretty":                   prep(agentsAnswer(allAgents)),
		"agent_list_expires_before_ok-pretty": {prepare: agentsAnswer(allAgents), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*agentv1.ListAgentsRequest](t, r, "ListAgents"), &agentv1.ListAgentsRequest{
				PageSize: 1000, Filter: &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: "2099-01-02 15:04:05 +0000 +00"},
			})
		}},
		"agent_list_expires_before_past-json": selfAnswer("ListAgents"),
		"agent_count_banned_false-pretty":     prep(countFromCapture("CountAgents")),

		// federation
		"federation_list_empty-pretty":                 {answers: answer("ListFederationRelationships", &trustdomainv1.ListFederationRelationshipsResponse{})},
		"federation_list_empty-json":                   selfAnswer("ListFederationRelationships"),
		"federation_create_https_web-pretty":           prep(echoRelationships("BatchCreateFederationRelationship")),
		"federation_create_https_spiffe-json":          {answers: answer("BatchCreateFederationRelationship", "self"), check: checkRelationshipBundle("partner.example", 1)},
		"federation_create_https_spiffe_pretty-pretty": {prepare: echoRelationships("BatchCreateFederationRelationship"), check: checkRelationshipBundle("partner2.example", 1)},
		"federation_create_duplicate-pretty":           prep(echoRelationships("BatchCreateFederationRelationship")),
		"federation_create_http_url-pretty":            prep(echoRelationships("BatchCreateFederationRelationship")),
		"federation_create_bad_profile-pretty":         clientSide,
		"federation_create_own_td-pretty":              prep(echoRelationships("BatchCreateFederationRelationship")),
		"federation_create_data-pretty":                prep(echoRelationships("BatchCreateFederationRelationship")),
		"federation_list-pretty":                       refAnswer("ListFederationRelationships", "federation_list-json"),
		"federation_list-json":                         selfAnswer("ListFederationRelationships"),
		"federation_show-pretty":                       refAnswer("GetFederationRelationship", "federation_show-json"),
		"federation_show-json":                         selfAnswer("GetFederationRelationship"),
		"federation_show_unknown-pretty":               errAnswer("GetFederationRelationship"),
		"federation_update-pretty":                     prep(echoRelationships("BatchUpdateFederationRelationship")),
		"federation_update_unknown-json":               selfAnswer("BatchUpdateFederationRelationship"),
		"federation_refresh-pretty":                    errAnswer("RefreshBundle"),
		"federation_refresh_unknown-pretty":            {answers: answer("RefreshBundle", status.Error(codes.NotFound, "federation relationship not found"))},
		"federation_delete-pretty": {answers: answer("BatchDeleteFederationRelationship", &trustdomainv1.BatchDeleteFederationRelationshipResponse{
			Results: []*trustdomainv1.BatchDeleteFederationRelationshipResponse_Result{{Status: okStatus(), TrustDomain: "partner3.example"}},
		})},
		"federation_delete-json":           selfAnswer("BatchDeleteFederationRelationship"),
		"federation_delete_unknown-pretty": refAnswer("BatchDeleteFederationRelationship", "federation_delete_unknown-json"),
		"federation_delete_unknown-json":   selfAnswer("BatchDeleteFederationRelationship"),

		// logger
		"logger_get-pretty": refAnswer("GetLogger", "logger_get-json"),
		"logger_get-json":   selfAnswer("GetLogger"),
		"logger_set-pretty": {
			answers: answer("SetLogLevel", &types.Logger{CurrentLevel: types.LogLevel_INFO, LaunchLevel: types.LogLevel_DEBUG}),
			check: func(t *testing.T, r *replayRun) {
				wantProto(t, "request", sent[*loggerv1.SetLogLevelRequest](t, r, "SetLogLevel"), &loggerv1.SetLogLevelRequest{NewLevel: types.LogLevel_INFO})
			},
		},
		"logger_set-json": {answers: answer("SetLogLevel", "self"), check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*loggerv1.SetLogLevelRequest](t, r, "SetLogLevel"), &loggerv1.SetLogLevelRequest{NewLevel: types.LogLevel_WARN})
		}},
		"logger_set_bad_level-pretty":     clientSide,
		"logger_set_missing_level-pretty": clientSide,
		"logger_reset-pretty":             refAnswer("ResetLogLevel", "logger_reset-json"),
		"logger_reset-json":               selfAnswer("ResetLogLevel"),

		// upstream authority
		"upstreamauthority_taint-pretty":               errAnswer("TaintX509UpstreamAuthority"),
		"upstreamauthority_taint-json":                 errAnswer("TaintX509UpstreamAuthority"),
		"upstreamauthority_taint_missing_skid-pretty":  clientSide,
		"upstreamauthority_revoke-pretty":              errAnswer("RevokeX509UpstreamAuthority"),
		"upstreamauthority_revoke-json":                errAnswer("RevokeX509UpstreamAuthority"),
		"upstreamauthority_revoke_missing_skid-pretty": clientSide,

		// validate belongs to validate.go (the config owner tests it)
		"server_validate_ok":                   {skip: "validate.go"},
		"server_validate_unknown_key":          {skip: "validate.go"},
		"server_validate_missing_trust_domain": {skip: "validate.go"},
		"server_validate_syntax_error":         {skip: "validate.go"},
		"server_validate_bad_ca_key_type":      {skip: "validate.go"},
		"server_validate_bad_ttl":              {skip: "validate.go"},
		"server_validate_bad_trust_domain":     {skip: "validate.go"},
		"server_validate_bad_log_level":        {skip: "validate.go"},
		"server_validate_no_datastore":         {skip: "validate.go"},
		"server_validate_svid_ttl_exceeds_ca":  {skip: "validate.go"},
		"server_validate_missing_file":         {skip: "validate.go"},
		"server_validate_default_path_missing": {skip: "validate.go"},

		// command line handling
		"cli_server_bad_output_value":    {help: true},
		"cli_server_unknown_flag":        {help: true},
		"cli_server_positional_arg":      prep(countFromCapture("CountEntries")),
		"cli_server_missing_socket-json": clientSide,
		"cli_server_output_equals_form":  selfAnswer("CountEntries"),
		"cli_server_double_dash_flags":   selfAnswer("CountEntries"),
		"cli_server_unknown_subcommand":  {help: true},
	}
	for _, kind := range []struct{ word, jwtWord string }{{"x509", "X509"}, {"jwt", "JWT"}} {
		p := "localauthority_" + kind.word + "_"
		show := "Get" + kind.jwtWord + "AuthorityState"
		for _, n := range []string{"01_show", "06_show", "08_show", "12_show", "15_show"} {
			c[p+n+"-pretty"] = refAnswer(show, p+n+"-json")
		}
		for _, n := range []string{"01_show", "06_show", "08_show", "12_show", "15_show", "18_show", "20_show", "22_show", "24_show"} {
			c[p+n+"-json"] = selfAnswer(show)
		}
		c[p+"02_activate_nothing_prepared-pretty"] = errAnswer("Activate" + kind.jwtWord + "Authority")
		c[p+"03_taint_active-pretty"] = errAnswer("Taint" + kind.jwtWord + "Authority")
		c[p+"04_revoke_active-pretty"] = errAnswer("Revoke" + kind.jwtWord + "Authority")
		c[p+"04b_activate_missing_id-pretty"] = clientSide
		c[p+"05_prepare-pretty"] = prep(authorityFromCapture("Prepare" + kind.jwtWord + "Authority"))
		c[p+"06b_activate_unknown_id-pretty"] = errAnswer("Activate" + kind.jwtWord + "Authority")
		c[p+"07_activate-pretty"] = prep(authorityFromCapture("Activate" + kind.jwtWord + "Authority"))
		c[p+"09_bundle_show-json"] = selfAnswer("GetBundle")
		c[p+"10_revoke_untainted_old-pretty"] = errAnswer("Revoke" + kind.jwtWord + "Authority")
		c[p+"11_taint_old-pretty"] = prep(authorityFromCapture("Taint" + kind.jwtWord + "Authority"))
		c[p+"13_bundle_show-json"] = selfAnswer("GetBundle")
		c[p+"13b_taint_already_tainted-pretty"] = errAnswer("Taint" + kind.jwtWord + "Authority")
		c[p+"14_revoke_old-pretty"] = prep(authorityFromCapture("Revoke" + kind.jwtWord + "Authority"))
		c[p+"16_bundle_show-json"] = selfAnswer("GetBundle")
		c[p+"17_prepare-json"] = selfAnswer("Prepare" + kind.jwtWord + "Authority")
		c[p+"19_activate-json"] = selfAnswer("Activate" + kind.jwtWord + "Authority")
		c[p+"20b_revoke_untainted_old-json"] = errAnswer("Revoke" + kind.jwtWord + "Authority")
		c[p+"21_taint-json"] = selfAnswer("Taint" + kind.jwtWord + "Authority")
		c[p+"23_revoke-json"] = selfAnswer("Revoke" + kind.jwtWord + "Authority")
		c[p+"24b_taint_unknown-json"] = errAnswer("Taint" + kind.jwtWord + "Authority")
		c[p+"25_bundle_show-json"] = selfAnswer("GetBundle")
	}
	delete(c, "localauthority_jwt_01_show-pretty")
	delete(c, "localauthority_jwt_01_show-json")
	return c
}

// bundleSet answers BatchSetFederatedBundle with one status and checks the
// bundle sent is the partner CA for td.
func bundleSet(code codes.Code, td, msg string) replay {
	return replay{
		answers: answer("BatchSetFederatedBundle", &bundlev1.BatchSetFederatedBundleResponse{
			Results: []*bundlev1.BatchSetFederatedBundleResponse_Result{{Status: &types.Status{Code: int32(code), Message: msg}}},
		}),
		check: func(t *testing.T, r *replayRun) {
			pemData, err := os.ReadFile(filepath.Join(refDir, "outputs", "inputs", "partner-ca.pem"))
			if err != nil {
				t.Fatal(err)
			}
			want := &types.Bundle{TrustDomain: td}
			for _, der := range pemDERs(t, string(pemData)) {
				want.X509Authorities = append(want.X509Authorities, &types.X509Certificate{Asn1: der})
			}
			wantProto(t, "request", sent[*bundlev1.BatchSetFederatedBundleRequest](t, r, "BatchSetFederatedBundle"),
				&bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{want}})
		},
	}
}

func bundleDelete(td string, mode bundlev1.BatchDeleteFederatedBundleRequest_Mode) replay {
	return replay{
		answers: answer("BatchDeleteFederatedBundle", &bundlev1.BatchDeleteFederatedBundleResponse{
			Results: []*bundlev1.BatchDeleteFederatedBundleResponse_Result{{Status: okStatus(), TrustDomain: td}},
		}),
		check: func(t *testing.T, r *replayRun) {
			wantProto(t, "request", sent[*bundlev1.BatchDeleteFederatedBundleRequest](t, r, "BatchDeleteFederatedBundle"),
				&bundlev1.BatchDeleteFederatedBundleRequest{Mode: mode, TrustDomains: []string{td}})
		},
	}
}

// joinToken answers CreateJoinToken with the token a pretty capture shows
// and checks the agent ID and TTL sent.
func joinToken(path string, ttl int32) replay {
	return replay{
		prepare: func(t *testing.T, r *replayRun) {
			var value string
			for _, l := range strings.Split(r.ref.stdout, "\n") {
				if v, ok := strings.CutPrefix(l, "Token: "); ok {
					value = v
				}
			}
			r.api.on("CreateJoinToken", &types.JoinToken{Value: value, ExpiresAt: refTime.Unix() + int64(ttl)})
		},
		check: func(t *testing.T, r *replayRun) {
			want := &agentv1.CreateJoinTokenRequest{Ttl: ttl}
			if path != "" {
				want.AgentId = hive(path)
			}
			wantProto(t, "request", sent[*agentv1.CreateJoinTokenRequest](t, r, "CreateJoinToken"), want)
		},
	}
}

// getEntry answers GetEntry with the only entry of a JSON show capture.
func getEntry(name string) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		var resp entryv1.ListEntriesResponse
		if err := unmarshalRef(t, name, &resp); err != nil {
			t.Fatal(err)
		}
		r.api.on("GetEntry", resp.Entries[0])
	}
}

func checkRelationshipBundle(td string, x509Authorities int) func(t *testing.T, r *replayRun) {
	return func(t *testing.T, r *replayRun) {
		req := sent[*trustdomainv1.BatchCreateFederationRelationshipRequest](t, r, "BatchCreateFederationRelationship")
		b := req.FederationRelationships[0].TrustDomainBundle
		if b.GetTrustDomain() != td || len(b.GetX509Authorities()) != x509Authorities {
			t.Errorf("relationship bundle sent: %v", b)
		}
	}
}

func jwtOfCapture(name string) string {
	b, err := os.ReadFile(filepath.Join(refDir, "outputs", name+".stdout"))
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(b))
}

func checkTokenFile(t *testing.T, r *replayRun) {
	path := filepath.Join(r.dir, "mint-out", "token.jwt")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != jwtOfCapture("jwt_mint-pretty") {
		t.Errorf("token file %q", b)
	}
	checkFiles("mint-out", "token.jwt")(t, r)
}
