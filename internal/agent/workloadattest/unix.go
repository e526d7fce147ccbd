// Package workloadattest turns a workload's process ID into selectors, one
// file per attestor (unix.go: the "unix" WorkloadAttestor of SPIRE). It
// reads what the kernel says about the process; it does not decide which
// process is calling (that is the Workload API's peer tracking) and does not
// guard against PID reuse (the caller re-checks the process after Attest).
package workloadattest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// UnixConfig configures the unix attestor (SPIRE's WorkloadAttestor "unix"
// plugin_data).
type UnixConfig struct {
	// DiscoverWorkloadPath adds unix:path and unix:sha256 selectors; the
	// agent then needs permission to read the workload's executable.
	DiscoverWorkloadPath bool
	// WorkloadSizeLimit bounds the size of an executable that is hashed
	// for unix:sha256: zero means no limit, negative means never hash.
	WorkloadSizeLimit int64
	// ProcDir is the proc file system; empty means "/proc".
	ProcDir string
}

// Unix is the unix workload attestor. It is safe for concurrent use.
type Unix struct {
	cfg         UnixConfig
	lookupUser  func(uid string) (string, bool)
	lookupGroup func(gid string) (string, bool)
}

// NewUnix returns a unix attestor.
func NewUnix(cfg UnixConfig) *Unix {
	if cfg.ProcDir == "" {
		cfg.ProcDir = "/proc"
	}
	return &Unix{
		cfg: cfg,
		lookupUser: func(uid string) (string, bool) {
			u, err := user.LookupId(uid)
			if err != nil {
				return "", false
			}
			return u.Username, true
		},
		lookupGroup: func(gid string) (string, bool) {
			g, err := user.LookupGroupId(gid)
			if err != nil {
				return "", false
			}
			return g.Name, true
		},
	}
}

// Attest returns the selectors of process pid, in SPIRE's order:
// unix:uid, unix:user (when the uid has a name), unix:gid, unix:group,
// unix:supplementary_gid and unix:supplementary_group for each
// supplementary group, then unix:path and unix:sha256 when
// DiscoverWorkloadPath is set. uid and gid are the effective ones from
// /proc/<pid>/status.
func (u *Unix) Attest(_ context.Context, pid int32) ([]string, error) {
	if pid <= 0 {
		return nil, wrapErr(fmt.Errorf("invalid pid %d", pid))
	}
	st, err := readStatus(u.path(pid, "status"))
	if err != nil {
		return nil, wrapErr(err)
	}
	uid, err := effective(st, "uid")
	if err != nil {
		return nil, wrapErr(err)
	}
	gid, err := effective(st, "gid")
	if err != nil {
		return nil, wrapErr(err)
	}

	sel := []string{"unix:uid:" + uid}
	if name, ok := u.lookupUser(uid); ok {
		sel = append(sel, "unix:user:"+name)
	}
	sel = append(sel, "unix:gid:"+gid)
	if name, ok := u.lookupGroup(gid); ok {
		sel = append(sel, "unix:group:"+name)
	}
	for _, sg := range st["groups"] {
		sel = append(sel, "unix:supplementary_gid:"+sg)
		if name, ok := u.lookupGroup(sg); ok {
			sel = append(sel, "unix:supplementary_group:"+name)
		}
	}

	if u.cfg.DiscoverWorkloadPath {
		exe := u.path(pid, "exe")
		path, err := os.Readlink(exe)
		if err != nil {
			return nil, wrapErr(fmt.Errorf("path lookup: %w", err))
		}
		sel = append(sel, "unix:path:"+path)
		if u.cfg.WorkloadSizeLimit >= 0 {
			// Hash through /proc/<pid>/exe: it names the executable in the
			// workload's mount namespace, whatever path it printed.
			sum, err := sha256File(exe, u.cfg.WorkloadSizeLimit)
			if err != nil {
				return nil, wrapErr(err)
			}
			sel = append(sel, "unix:sha256:"+sum)
		}
	}
	return sel, nil
}

func (u *Unix) path(pid int32, name string) string {
	return filepath.Join(u.cfg.ProcDir, strconv.FormatInt(int64(pid), 10), name)
}

// readStatus returns the fields of /proc/<pid>/status, keys lower-cased.
func readStatus(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read process status: %w", err)
	}
	out := make(map[string][]string)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		out[strings.ToLower(strings.TrimSpace(key))] = strings.Fields(value)
	}
	return out, sc.Err()
}

// effective returns the effective ID of a Uid:/Gid: status line (real,
// effective, saved, file system), or the only one.
func effective(st map[string][]string, key string) (string, error) {
	ids := st[key]
	switch len(ids) {
	case 0:
		k := strings.ToUpper(key)
		return "", fmt.Errorf("%ss lookup: no %ss for process", k, k)
	case 1:
		return ids[0], nil
	default:
		return ids[1], nil
	}
}

func sha256File(path string, limit int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("SHA256 digest: %w", err)
	}
	defer f.Close()
	if limit > 0 {
		fi, err := f.Stat()
		if err != nil {
			return "", fmt.Errorf("SHA256 digest: %w", err)
		}
		if fi.Size() > limit {
			return "", fmt.Errorf("SHA256 digest: workload %s exceeds size limit (%d > %d)", path, fi.Size(), limit)
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("SHA256 digest: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func wrapErr(err error) error {
	return fmt.Errorf("workloadattest: %w", err)
}
