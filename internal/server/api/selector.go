package api

import (
	"strings"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// SelectorsFromProto validates selectors (a type without ':' and a value,
// both non-empty) and converts them.
func SelectorsFromProto(in []*types.Selector) ([]datastore.Selector, error) {
	out := make([]datastore.Selector, 0, len(in))
	for _, s := range in {
		switch {
		case s == nil || s.Type == "":
			return nil, Publicf("missing selector type")
		case strings.Contains(s.Type, ":"):
			return nil, Publicf("selector type contains ':'")
		case s.Value == "":
			return nil, Publicf("missing selector value")
		}
		out = append(out, datastore.Selector{Type: s.Type, Value: s.Value})
	}
	return out, nil
}

// ProtoFromSelectors converts selectors, nil for none.
func ProtoFromSelectors(in []datastore.Selector) []*types.Selector {
	if len(in) == 0 {
		return nil
	}
	out := make([]*types.Selector, 0, len(in))
	for _, s := range in {
		out = append(out, &types.Selector{Type: s.Type, Value: s.Value})
	}
	return out
}

// MatchFromProto converts a selector match behavior. Unknown values are
// refused, so that a filter never silently widens.
func MatchFromProto(m types.SelectorMatch_MatchBehavior) (datastore.MatchBehavior, error) {
	switch m {
	case types.SelectorMatch_MATCH_EXACT:
		return datastore.MatchExact, nil
	case types.SelectorMatch_MATCH_SUBSET:
		return datastore.MatchSubset, nil
	case types.SelectorMatch_MATCH_SUPERSET:
		return datastore.MatchSuperset, nil
	case types.SelectorMatch_MATCH_ANY:
		return datastore.MatchAny, nil
	}
	return 0, Publicf("unknown match behavior %d", int32(m))
}

// FederatesWithMatchFromProto converts a federates-with match behavior.
func FederatesWithMatchFromProto(m types.FederatesWithMatch_MatchBehavior) (datastore.MatchBehavior, error) {
	switch m {
	case types.FederatesWithMatch_MATCH_EXACT:
		return datastore.MatchExact, nil
	case types.FederatesWithMatch_MATCH_SUBSET:
		return datastore.MatchSubset, nil
	case types.FederatesWithMatch_MATCH_SUPERSET:
		return datastore.MatchSuperset, nil
	case types.FederatesWithMatch_MATCH_ANY:
		return datastore.MatchAny, nil
	}
	return 0, Publicf("unknown match behavior %d", int32(m))
}
