// Package flowc runs Neural Hive's Flow C across real processes: the
// spire-server and spire-agent binaries, the runbook's registration entries
// (with unix:uid + unix:path selectors, the agent's discover_workload_path),
// the service-registry, orchestrator-dynamic and worker-agents binaries, and
// flowc-submit as the client. The services get their SVIDs from the agent
// through go-spiffe, as in production.
package flowc

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the binaries built once by TestMain; rogueDir holds a copy of
// worker-agents at a path no registration entry names.
var binDir, rogueDir string

var binaries = []string{"spire-server", "spire-agent", "service-registry", "orchestrator-dynamic", "worker-agents", "flowc-submit"}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hid-flowc")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if dir, err = filepath.EvalSymlinks(dir); err != nil { // unix:path is the resolved path
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir, rogueDir = filepath.Join(dir, "bin"), filepath.Join(dir, "rogue")
	for _, name := range binaries {
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "./cmd/"+name)
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
			return 1
		}
	}
	if err := copyFile(filepath.Join(binDir, "worker-agents"), filepath.Join(rogueDir, "worker-agents")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func copyFile(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
