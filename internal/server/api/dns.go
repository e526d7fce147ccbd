package api

import (
	"errors"
	"strings"

	"golang.org/x/net/idna"
)

// dnsProfile is the IDNA profile SPIRE 1.13 validates DNS names with. Like
// SPIRE it has no mapping table, so STD3 character rules are not applied: a
// name such as "bad_dns name" passes, as it does in SPIRE (observed).
func dnsProfile() *idna.Profile {
	return idna.New(
		idna.StrictDomainName(true),
		idna.ValidateLabels(true),
		idna.VerifyDNSLength(true),
		idna.CheckJoiners(true),
		idna.BidiRule(),
		idna.CheckHyphens(true),
	)
}

// ValidateDNSName checks a DNS name for an entry or a CSR, with SPIRE's
// rules: ASCII only, at most one wildcard and only as the whole first label,
// no trailing dot, and a valid IDNA A-label form.
func ValidateDNSName(name string) error {
	for i := range len(name) {
		if name[i] >= 0x80 {
			return Publicf("name must be ascii")
		}
	}
	switch stars := strings.Count(name, "*"); {
	case stars == 0:
		return validateNonWildcard(name)
	case stars > 1:
		return Publicf("too many wildcards")
	}
	rest, ok := strings.CutPrefix(name, "*.")
	if !ok {
		return Publicf("wildcard must be first label")
	}
	return validateNonWildcard(rest)
}

func validateNonWildcard(name string) error {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return Publicf("empty or only whitespace")
	case strings.HasSuffix(name, "."):
		return Publicf("domain ends with dot")
	case strings.HasPrefix(name, "*."):
		return Publicf("wildcard not allowed")
	}
	checked, err := dnsProfile().ToASCII(name)
	if err != nil {
		return &PublicError{Msg: errors.Join(errors.New("idna error"), err).Error(), Err: err}
	}
	if checked != name {
		return Publicf("input domain name %q does not match idna output %q: label mismatch after idna", name, checked)
	}
	return nil
}

// CheckWildcardOverlap refuses a list where a wildcard name covers another
// name of the list ("*.example.org" and "a.example.org").
func CheckWildcardOverlap(names []string) error {
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		set[n] = struct{}{}
	}
	for n := range set {
		if strings.HasPrefix(n, "*") {
			continue
		}
		labels := strings.Split(n, ".")
		labels[0] = "*"
		if _, ok := set[strings.Join(labels, ".")]; ok {
			return Publicf("name %q overlaps with an existing wildcard name in the list: wildcard overlap", n)
		}
	}
	return nil
}
