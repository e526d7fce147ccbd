package datastore

import (
	"reflect"
	"testing"
)

func TestDecodeLists(t *testing.T) {
	for _, tt := range []struct {
		name string
		sels []Selector
	}{
		{"ok/empty", []Selector{}},
		{"ok/plain", []Selector{{"unix", "uid:1000"}, {"k8s", "ns:default"}}},
		{"ok/empty strings", []Selector{{"", ""}}},
		{"ok/brackets and commas", []Selector{{"a],[", "b,c"}, {"[\"", "\\"}}},
		{"ok/escapes", []Selector{{"t", "line\nbreak"}, {"t", "<&>"}, {"t", "quote\"d"}, {"t", "ünï"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := &Entry{Selectors: tt.sels, DNSNames: []string{}, FederatesWith: []string{}}
			for _, s := range tt.sels {
				e.DNSNames = append(e.DNSNames, s.Type, s.Value)
			}
			sels, dns, _ := encodeEntryLists(e)
			gotSels, err := decodeSelectors([]byte(sels))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotSels, tt.sels) {
				t.Fatalf("selectors: got %q, want %q", gotSels, tt.sels)
			}
			gotDNS, err := decodeStrings([]byte(dns))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotDNS, e.DNSNames) {
				t.Fatalf("strings: got %q, want %q", gotDNS, e.DNSNames)
			}
		})
	}
	for _, bad := range []string{"", "[", "[[\"a\",\"b\"],]", "{}", "[\"a\",]"} {
		t.Run("fail/"+bad, func(t *testing.T) {
			if _, err := decodeSelectors([]byte(bad)); err == nil {
				t.Fatalf("selectors %q decoded", bad)
			}
		})
	}
}
