package authz

// RuleFor returns who may call fullMethod, with the table of SPIRE 1.13
// (pkg/server/authpolicy/policy_data.json). The debug and logger services
// are local only. Methods not listed are refused.
func RuleFor(fullMethod string) (Rule, bool) {
	var (
		anyone     = Rule{Any: true}
		adminLocal = Rule{Admin: true, Local: true}
		agent      = Rule{Agent: true}
		local      = Rule{Local: true}
		downstream = Rule{Downstream: true}
	)
	switch fullMethod {
	case "/spire.api.server.svid.v1.SVID/MintX509SVID",
		"/spire.api.server.svid.v1.SVID/MintJWTSVID":
		return adminLocal, true
	case "/spire.api.server.svid.v1.SVID/BatchNewX509SVID",
		"/spire.api.server.svid.v1.SVID/NewJWTSVID":
		return agent, true
	case "/spire.api.server.svid.v1.SVID/NewDownstreamX509CA",
		"/spire.api.server.bundle.v1.Bundle/PublishJWTAuthority":
		return downstream, true

	case "/spire.api.server.bundle.v1.Bundle/GetBundle":
		return anyone, true
	case "/spire.api.server.bundle.v1.Bundle/GetFederatedBundle":
		return Rule{Admin: true, Local: true, Agent: true}, true
	case "/spire.api.server.bundle.v1.Bundle/AppendBundle",
		"/spire.api.server.bundle.v1.Bundle/CountBundles",
		"/spire.api.server.bundle.v1.Bundle/ListFederatedBundles",
		"/spire.api.server.bundle.v1.Bundle/BatchCreateFederatedBundle",
		"/spire.api.server.bundle.v1.Bundle/BatchUpdateFederatedBundle",
		"/spire.api.server.bundle.v1.Bundle/BatchSetFederatedBundle",
		"/spire.api.server.bundle.v1.Bundle/BatchDeleteFederatedBundle":
		return adminLocal, true

	case "/spire.api.server.entry.v1.Entry/CountEntries",
		"/spire.api.server.entry.v1.Entry/ListEntries",
		"/spire.api.server.entry.v1.Entry/GetEntry",
		"/spire.api.server.entry.v1.Entry/BatchCreateEntry",
		"/spire.api.server.entry.v1.Entry/BatchUpdateEntry",
		"/spire.api.server.entry.v1.Entry/BatchDeleteEntry":
		return adminLocal, true
	case "/spire.api.server.entry.v1.Entry/GetAuthorizedEntries",
		"/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries",
		// Extension: the push stream of change revisions (internal/push).
		"/hive.push.v1.Push/Watch":
		return agent, true

	case "/spire.api.server.agent.v1.Agent/CountAgents",
		"/spire.api.server.agent.v1.Agent/ListAgents",
		"/spire.api.server.agent.v1.Agent/GetAgent",
		"/spire.api.server.agent.v1.Agent/DeleteAgent",
		"/spire.api.server.agent.v1.Agent/BanAgent",
		"/spire.api.server.agent.v1.Agent/CreateJoinToken":
		return adminLocal, true
	case "/spire.api.server.agent.v1.Agent/AttestAgent":
		return anyone, true
	case "/spire.api.server.agent.v1.Agent/RenewAgent",
		"/spire.api.server.agent.v1.Agent/PostStatus":
		return agent, true

	case "/spire.api.server.trustdomain.v1.TrustDomain/ListFederationRelationships",
		"/spire.api.server.trustdomain.v1.TrustDomain/GetFederationRelationship",
		"/spire.api.server.trustdomain.v1.TrustDomain/BatchCreateFederationRelationship",
		"/spire.api.server.trustdomain.v1.TrustDomain/BatchUpdateFederationRelationship",
		"/spire.api.server.trustdomain.v1.TrustDomain/BatchDeleteFederationRelationship",
		"/spire.api.server.trustdomain.v1.TrustDomain/RefreshBundle":
		return adminLocal, true

	case "/spire.api.server.localauthority.v1.LocalAuthority/GetJWTAuthorityState",
		"/spire.api.server.localauthority.v1.LocalAuthority/PrepareJWTAuthority",
		"/spire.api.server.localauthority.v1.LocalAuthority/ActivateJWTAuthority",
		"/spire.api.server.localauthority.v1.LocalAuthority/TaintJWTAuthority",
		"/spire.api.server.localauthority.v1.LocalAuthority/RevokeJWTAuthority",
		"/spire.api.server.localauthority.v1.LocalAuthority/GetX509AuthorityState",
		"/spire.api.server.localauthority.v1.LocalAuthority/PrepareX509Authority",
		"/spire.api.server.localauthority.v1.LocalAuthority/ActivateX509Authority",
		"/spire.api.server.localauthority.v1.LocalAuthority/TaintX509Authority",
		"/spire.api.server.localauthority.v1.LocalAuthority/TaintX509UpstreamAuthority",
		"/spire.api.server.localauthority.v1.LocalAuthority/RevokeX509Authority",
		"/spire.api.server.localauthority.v1.LocalAuthority/RevokeX509UpstreamAuthority":
		return adminLocal, true

	case "/spire.api.server.debug.v1.Debug/GetInfo",
		"/spire.api.server.logger.v1.Logger/GetLogger",
		"/spire.api.server.logger.v1.Logger/SetLogLevel",
		"/spire.api.server.logger.v1.Logger/ResetLogLevel",
		"/grpc.health.v1.Health/Check",
		"/grpc.health.v1.Health/List",
		"/grpc.health.v1.Health/Watch":
		return local, true
	}
	return Rule{}, false
}
