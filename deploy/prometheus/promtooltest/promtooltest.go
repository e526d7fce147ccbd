// Package promtooltest builds the real promtool for tests (deploy/prometheus
// checks the shipped rules and configuration with it, test/integration the
// metrics live processes expose). promtool comes from the Go module proxy
// through the separate module in tools/promtool, so this module never
// depends on prometheus/prometheus. The package does not run promtool.
package promtooltest

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

// Tags leaves out the cloud service discoveries (AWS, Azure, GCE...), which
// are most of promtool's build time; Kubernetes discovery stays (promtool
// imports it directly), so check config still understands scrape.yaml.
const Tags = "remove_all_sd"

// Build returns the path of a promtool built from the module in toolDir
// (tools/promtool). The binary is kept in the user cache directory under a
// key of that module's go.mod and go.sum, Tags, the Go version and the
// platform, so every package using Build shares it and only the first run
// (or a version bump) pays for the build; concurrent runs may both build,
// and each installs a whole binary. The build stops 30 s before tb's
// deadline, if it has one. A failed build fails the test: CI must not pass
// without the promtool checks.
func Build(tb testing.TB, toolDir string) string {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("go toolchain not in PATH: %v", err)
	}
	if toolDir, err = filepath.Abs(toolDir); err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		raw, err := os.ReadFile(filepath.Join(toolDir, f))
		if err != nil {
			tb.Fatal(err)
		}
		h.Write(raw)
	}
	fmt.Fprintf(h, "%s %s %s/%s", Tags, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		cacheDir = os.TempDir()
	}
	cacheDir = filepath.Join(cacheDir, "hive-identity")
	bin := filepath.Join(cacheDir, "promtool-"+hex.EncodeToString(h.Sum(nil))[:16])
	if err := exec.CommandContext(tb.Context(), bin, "--version").Run(); err == nil {
		return bin
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	ctx := tb.Context()
	if t, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := t.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
			defer cancel()
		}
	}
	staged := bin + ".tmp-" + strconv.Itoa(os.Getpid())
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", Tags, "-o", staged, "github.com/prometheus/prometheus/cmd/promtool")
	cmd.Dir = toolDir
	cmd.Env = append(os.Environ(),
		"GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"),
		"GOWORK=off",
		"CGO_ENABLED=0",
	)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(staged)
		tb.Fatalf("building promtool in %s: %v\n%s", toolDir, err, out)
	}
	tb.Logf("promtool built in %s", time.Since(start).Round(time.Second))
	// Rename is atomic: a concurrent run sees no binary or a whole one.
	if err := os.Rename(staged, bin); err != nil {
		tb.Fatal(err)
	}
	return bin
}
