package worker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// The capabilities (task kinds) a worker can execute.
const (
	// CapabilitySHA256: the output is the lowercase hex SHA-256 digest of the
	// payload, as sha256sum prints it.
	CapabilitySHA256 = "sha256"
	// CapabilityWordCount: the output is "lines=L words=W bytes=B" for the
	// payload, counted as wc does (words are runs of non-space characters).
	CapabilityWordCount = "wordcount"
)

// ErrUnsupported is returned by Execute for a capability it does not know.
var ErrUnsupported = errors.New("worker: unsupported capability")

// Capabilities returns every capability Execute supports.
func Capabilities() []string { return []string{CapabilitySHA256, CapabilityWordCount} }

// Execute runs the job of capability on payload and returns its output.
func Execute(capability string, payload []byte) (string, error) {
	switch capability {
	case CapabilitySHA256:
		sum := sha256.Sum256(payload)
		return hex.EncodeToString(sum[:]), nil
	case CapabilityWordCount:
		n, lines, words := len(payload), bytes.Count(payload, []byte{'\n'}), 0
		inWord := false
		for len(payload) > 0 {
			r, size := utf8.DecodeRune(payload)
			payload = payload[size:]
			if unicode.IsSpace(r) {
				inWord = false
			} else if !inWord {
				inWord = true
				words++
			}
		}
		return fmt.Sprintf("lines=%d words=%d bytes=%d", lines, words, n), nil
	}
	return "", fmt.Errorf("%w %.64q", ErrUnsupported, capability)
}
