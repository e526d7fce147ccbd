package datastore

import (
	"bytes"
	"encoding/json"
)

// The list columns of entries (selectors, dns_names, federates_with) hold
// JSON arrays written by json.Marshal: [["type","value"],...] and
// ["a","b"]. They are read back on every listing, so plain strings take a
// hand-written fast path; anything with an escape goes through encoding/json.

// encodeEntryLists encodes the list columns of e (JSON arrays).
func encodeEntryLists(e *Entry) (sels, dns, feds string) {
	pairs := make([][2]string, len(e.Selectors))
	for i, s := range e.Selectors {
		pairs[i] = [2]string{s.Type, s.Value}
	}
	return mustJSON(pairs), mustJSON(e.DNSNames), mustJSON(e.FederatesWith)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only slices of strings are encoded
	}
	return string(b)
}

// decodeSelectors decodes the selectors column. The JSON the store writes
// has no whitespace; strings without escapes take a fast path.
func decodeSelectors(b []byte) ([]Selector, error) {
	if out, ok := fastDecodeSelectors(b); ok {
		return out, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(b, &pairs); err != nil {
		return nil, err
	}
	out := make([]Selector, len(pairs))
	for i, p := range pairs {
		out[i] = Selector{Type: p[0], Value: p[1]}
	}
	return out, nil
}

// decodeStrings decodes a JSON array of strings column ([] when empty).
func decodeStrings(b []byte) ([]string, error) {
	if out, ok := fastDecodeStrings(b); ok {
		return out, nil
	}
	out := []string{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// fastDecodeSelectors parses [["t","v"],...] without escapes or whitespace;
// ok is false for anything else.
func fastDecodeSelectors(b []byte) ([]Selector, bool) {
	if bytes.IndexByte(b, '\\') >= 0 || len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	body := b[1 : len(b)-1]
	out := make([]Selector, 0, bytes.Count(body, []byte("],["))+1)
	for len(body) > 0 {
		var typ, val string
		var ok bool
		if body, ok = cutPrefix(body, '['); !ok {
			return nil, false
		}
		if typ, body, ok = cutString(body); !ok {
			return nil, false
		}
		if body, ok = cutPrefix(body, ','); !ok {
			return nil, false
		}
		if val, body, ok = cutString(body); !ok {
			return nil, false
		}
		if body, ok = cutPrefix(body, ']'); !ok {
			return nil, false
		}
		out = append(out, Selector{Type: typ, Value: val})
		if len(body) > 0 {
			if body, ok = cutPrefix(body, ','); !ok || len(body) == 0 {
				return nil, false
			}
		}
	}
	return out, true
}

// fastDecodeStrings parses ["a","b"] without escapes or whitespace.
func fastDecodeStrings(b []byte) ([]string, bool) {
	if bytes.IndexByte(b, '\\') >= 0 || len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	body := b[1 : len(b)-1]
	out := make([]string, 0, bytes.Count(body, []byte(","))+1)
	for len(body) > 0 {
		var v string
		var ok bool
		if v, body, ok = cutString(body); !ok {
			return nil, false
		}
		out = append(out, v)
		if len(body) > 0 {
			if body, ok = cutPrefix(body, ','); !ok || len(body) == 0 {
				return nil, false
			}
		}
	}
	return out, true
}

func cutPrefix(b []byte, c byte) ([]byte, bool) {
	if len(b) == 0 || b[0] != c {
		return b, false
	}
	return b[1:], true
}

// cutString takes a quoted string (without escapes) off the front of b.
func cutString(b []byte) (string, []byte, bool) {
	if len(b) < 2 || b[0] != '"' {
		return "", b, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return "", b, false
	}
	return string(b[1 : 1+end]), b[end+2:], true
}
