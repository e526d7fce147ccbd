package cli

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// stringsFlag collects every value of a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string { return fmt.Sprint(*s) }

func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// triState is a filter flag: "true", "false", anything else means no filter.
type triState int

const (
	triAll triState = iota
	triFalse
	triTrue
)

func (t *triState) String() string { return "" }

func (t *triState) Set(v string) error {
	switch v {
	case "true":
		*t = triTrue
	case "false":
		*t = triFalse
	default:
		*t = triAll
	}
	return nil
}

// parseSelector splits "type:value" at the first colon.
func parseSelector(s string) (*types.Selector, error) {
	typ, value, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("selector %q must be formatted as type:value", s)
	}
	return &types.Selector{Type: typ, Value: value}, nil
}

func parseSelectors(in []string) ([]*types.Selector, error) {
	out := make([]*types.Selector, 0, len(in))
	for _, s := range in {
		sel, err := parseSelector(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	return out, nil
}

// protoID parses a SPIFFE ID, with go-spiffe's error texts.
func protoID(s string) (*types.SPIFFEID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return nil, err
	}
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}, nil
}

// idString prints an API SPIFFE ID as SPIRE's CLI does (no validation).
func idString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return "spiffe://" + id.TrustDomain + id.Path
}

// plural picks the singular or plural word for n.
func plural(n int, singular, pluralForm string) string {
	if n == 1 {
		return singular
	}
	return pluralForm
}
