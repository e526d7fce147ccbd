package flow

// MaxCapabilityLen bounds the length of a capability name.
const MaxCapabilityLen = 64

// ValidCapability reports whether c is a well-formed capability name:
// [a-z0-9][a-z0-9._-]*, at most 64 bytes.
func ValidCapability(c string) bool {
	if c == "" || len(c) > MaxCapabilityLen {
		return false
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		switch {
		case b >= 'a' && b <= 'z', b >= '0' && b <= '9':
		case i > 0 && (b == '.' || b == '_' || b == '-'):
		default:
			return false
		}
	}
	return true
}
