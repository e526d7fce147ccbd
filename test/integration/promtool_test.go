package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promtoolTags are the build tags deploy/prometheus builds promtool with.
const promtoolTags = "remove_all_sd"

// promtool returns the path of promtool built from tools/promtool, as
// deploy/prometheus/rules_test.go builds it and under the same cache key
// (go.mod and go.sum of that module, the tags, the Go version and
// platform), so the binary in the user cache directory is shared and only
// the first run of either package pays for the build. A failed build fails
// the test.
func promtool(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go toolchain not in PATH: %v", err)
	}
	toolDir := filepath.Join(repoRoot(), "tools", "promtool")
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		raw, err := os.ReadFile(filepath.Join(toolDir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(raw)
	}
	fmt.Fprintf(h, "%s %s %s/%s", promtoolTags, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		cacheDir = os.TempDir()
	}
	cacheDir = filepath.Join(cacheDir, "hive-identity")
	bin := filepath.Join(cacheDir, "promtool-"+hex.EncodeToString(h.Sum(nil))[:16])
	if err := exec.CommandContext(t.Context(), bin, "--version").Run(); err == nil {
		return bin
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		defer cancel()
	}
	staged := bin + ".tmp-" + strconv.Itoa(os.Getpid())
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", promtoolTags, "-o", staged, "github.com/prometheus/prometheus/cmd/promtool")
	cmd.Dir = toolDir
	cmd.Env = append(os.Environ(),
		"GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"),
		"GOWORK=off",
		"CGO_ENABLED=0",
	)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(staged)
		t.Fatalf("building promtool in %s: %v\n%s", toolDir, err, out)
	}
	t.Logf("promtool built in %s", time.Since(start).Round(time.Second))
	// Rename is atomic: a concurrent run sees no binary or a whole one.
	if err := os.Rename(staged, bin); err != nil {
		t.Fatal(err)
	}
	return bin
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
