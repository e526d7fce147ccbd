// Package doctor holds what `spire-server doctor` and `spire-agent doctor`
// (Extension) share: a Finding per check with the runbook's resolution, the
// Report that sums them up, its pretty and JSON forms and its exit status,
// and ExpiryStatus, the judgement of an expiring SVID both doctors apply.
// The checks themselves, and the resolutions they write, live with each CLI.
package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Status is the verdict of a check, from best to worst: OK, Warn, Crit.
type Status string

// Finding statuses, from best to worst.
const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Crit Status = "CRIT"
)

// Finding is one result of a doctor check. Resolution, in the runbook's
// language (Portuguese), is empty for OK findings.
type Finding struct {
	Check      string `json:"check"`
	Status     Status `json:"status"`
	Detail     string `json:"detail"`
	Resolution string `json:"resolution"`
}

// Summary counts findings per status; Status is the worst one (OK when
// there are none).
type Summary struct {
	Status Status `json:"status"`
	OK     int    `json:"ok"`
	Warn   int    `json:"warn"`
	Crit   int    `json:"crit"`
}

// Report is a doctor's findings and their summary; it is the -output json
// document.
type Report struct {
	Findings []Finding `json:"findings"`
	Summary  Summary   `json:"summary"`
}

// NewReport sums up findings; a finding whose status is neither Warn nor
// Crit counts as OK.
func NewReport(findings []Finding) Report {
	r := Report{Findings: findings, Summary: Summary{Status: OK}}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	for _, f := range findings {
		switch f.Status {
		case Crit:
			r.Summary.Crit++
			r.Summary.Status = Crit
		case Warn:
			r.Summary.Warn++
			if r.Summary.Status == OK {
				r.Summary.Status = Warn
			}
		default:
			r.Summary.OK++
		}
	}
	return r
}

// ExitCode is the doctor's exit status: 1 when a finding is critical, 0
// otherwise (warnings included).
func (r Report) ExitCode() int {
	if r.Summary.Crit > 0 {
		return 1
	}
	return 0
}

// WritePretty prints a line per finding (status, check, detail) with its
// resolution indented below it, then the summary.
func (r Report) WritePretty(w io.Writer) error {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%-4s  %s: %s\n", f.Status, f.Check, f.Detail)
		if f.Resolution != "" {
			for line := range strings.SplitSeq(strings.TrimRight(f.Resolution, "\n"), "\n") {
				if line == "" {
					b.WriteString("\n")
					continue
				}
				b.WriteString("      " + line + "\n")
			}
		}
	}
	fmt.Fprintf(&b, "\nSummary: %s (%d OK, %d WARN, %d CRIT)\n", r.Summary.Status, r.Summary.OK, r.Summary.Warn, r.Summary.Crit)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the report as one JSON object on one line, with "<",
// ">" and "&" unescaped.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // resolutions hold shell commands with "<", ">" and "|"
	return enc.Encode(r)
}

// ExpiryStatus judges an SVID valid until notAfter whose lifetime is life,
// at now: Crit once expired; Warn when less than threshold remains and it is
// past its renewal point (half of its lifetime, less a grace of a tenth of
// it and at least 5 s), which a healthy rotation never reaches; OK otherwise.
// Judging against the renewal point keeps the runbook's 3600 s alert from
// flagging healthy SVIDs issued with -ttl 3600.
func ExpiryStatus(notAfter time.Time, life, threshold time.Duration, now time.Time) Status {
	left := notAfter.Sub(now)
	if left <= 0 {
		return Crit
	}
	renewBy := life/2 - max(life/10, 5*time.Second)
	if left < threshold && left < renewBy {
		return Warn
	}
	return OK
}
