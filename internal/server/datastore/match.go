package datastore

import (
	"slices"
	"strings"
)

// setFilter describes how to match a set-valued attribute (an entry's or a
// node's selectors, an entry's federated trust domains) in SQL.
type setFilter struct {
	from  string // association table(s), aliased s
	key   string // the owner key column of s
	total string // subquery counting all of an owner's elements (correlated on s)
	cond  string // condition matching one element of the filter set
	args  []any
	n     int // size of the filter set, duplicates removed
}

// in returns "<keyExpr> IN (...)" selecting the owners whose sets match m,
// with SPIRE's semantics:
//   - MatchExact: the owner's set equals the filter set;
//   - MatchSubset: the owner's set is a non-empty subset of the filter set;
//   - MatchSuperset: the owner's set contains every element of the filter set;
//   - MatchAny: the sets share at least one element.
func (f setFilter) in(keyExpr string, m MatchBehavior) (string, []any, error) {
	var b strings.Builder
	b.WriteString(keyExpr)
	b.WriteString(" IN (SELECT ")
	b.WriteString(f.key)
	b.WriteString(" FROM ")
	b.WriteString(f.from)
	b.WriteString(" WHERE ")
	b.WriteString(f.cond)
	args := slices.Clone(f.args)
	switch m {
	case MatchAny:
	case MatchSuperset:
		b.WriteString(" GROUP BY " + f.key + " HAVING COUNT(*) = ?")
		args = append(args, int64(f.n))
	case MatchSubset:
		b.WriteString(" GROUP BY " + f.key + " HAVING COUNT(*) = " + f.total)
	case MatchExact:
		b.WriteString(" GROUP BY " + f.key + " HAVING COUNT(*) = ? AND " + f.total + " = ?")
		args = append(args, int64(f.n), int64(f.n))
	default:
		return "", nil, newError(ErrInvalidArgument, "unhandled match behavior %d", m)
	}
	b.WriteString(")")
	return b.String(), args, nil
}

// selectorFilter matches selectors in table (entry_selectors or
// node_selectors) whose owner column is keyCol.
func selectorFilter(table, keyCol string, sels []Selector) setFilter {
	sels = normalizeSelectors(sels)
	var cond strings.Builder
	args := make([]any, 0, 2*len(sels))
	cond.WriteString("(")
	for i, s := range sels {
		if i > 0 {
			cond.WriteString(" OR ")
		}
		cond.WriteString("(s.type = ? AND s.value = ?)")
		args = append(args, s.Type, s.Value)
	}
	cond.WriteString(")")
	return setFilter{
		from:  table + " s",
		key:   "s." + keyCol,
		total: "(SELECT COUNT(*) FROM " + table + " c WHERE c." + keyCol + " = s." + keyCol + ")",
		cond:  cond.String(),
		args:  args,
		n:     len(sels),
	}
}

// federatesFilter matches an entry's federated trust domains.
func federatesFilter(tds []string) setFilter {
	tds = normalizeStrings(tds)
	args := make([]any, 0, len(tds))
	for _, td := range tds {
		args = append(args, td)
	}
	return setFilter{
		from:  "entry_federates_with s JOIN bundles b ON b.id = s.bundle_id",
		key:   "s.entry_id",
		total: "(SELECT COUNT(*) FROM entry_federates_with c WHERE c.entry_id = s.entry_id)",
		cond:  "b.trust_domain IN (" + placeholders(len(tds)) + ")",
		args:  args,
		n:     len(tds),
	}
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// normalizeSelectors returns a sorted (type, then value) copy without duplicates.
func normalizeSelectors(sels []Selector) []Selector {
	out := slices.Clone(sels)
	slices.SortFunc(out, compareSelectors)
	return slices.Compact(out)
}

func compareSelectors(a, b Selector) int {
	if c := strings.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

// normalizeStrings returns a sorted copy without duplicates.
func normalizeStrings(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// where joins conditions with AND ("" when there are none).
func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}
