package worker

import (
	"errors"
	"testing"
)

func TestExecute(t *testing.T) {
	for _, tt := range []struct {
		name, capability, payload, want string
		err                             error
	}{
		{name: "ok/sha256 empty", capability: "sha256", want: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{name: "ok/sha256", capability: "sha256", payload: "abc", want: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{name: "ok/wordcount", capability: "wordcount", payload: "one two\n  three\tfour\n", want: "lines=2 words=4 bytes=21"},
		{name: "ok/wordcount unicode spaces", capability: "wordcount", payload: "olá\u00a0mundo", want: "lines=0 words=2 bytes=11"},
		{name: "ok/wordcount empty", capability: "wordcount", want: "lines=0 words=0 bytes=0"},
		{name: "fail/unknown", capability: "translate", err: ErrUnsupported},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Execute(tt.capability, []byte(tt.payload))
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}
