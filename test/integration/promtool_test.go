package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neural-hive/hive-identity/deploy/prometheus/promtooltest"
)

// promtool returns the path of promtool built from tools/promtool; the
// binary in the user cache directory is shared with deploy/prometheus, so
// only the first run of either package pays for the build. A failed build
// fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	return promtooltest.Build(t, filepath.Join(repoRoot(), "tools", "promtool"))
}

// promtoolCheckMetrics runs `promtool check metrics` on a scrape and fails
// the test with promtool's findings.
func promtoolCheckMetrics(t *testing.T, bin, what, text string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on the %s scrape: %v\n%s", what, err, out)
	}
}
