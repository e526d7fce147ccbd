package workloadattest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestUnixAttestRealProcess(t *testing.T) {
	ctx := context.Background()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	body, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	uid := strconv.Itoa(os.Geteuid())
	gid := strconv.Itoa(os.Getegid())
	pid := int32(os.Getpid())

	for _, tt := range []struct {
		name    string
		cfg     UnixConfig
		want    []string
		notWant []string
		wantErr string
	}{
		{
			name:    "ok/ids",
			want:    []string{"unix:uid:" + uid, "unix:gid:" + gid},
			notWant: []string{"unix:path:", "unix:sha256:"},
		},
		{
			name: "ok/discover path",
			cfg:  UnixConfig{DiscoverWorkloadPath: true},
			want: []string{"unix:uid:" + uid, "unix:path:" + exe, "unix:sha256:" + hex.EncodeToString(sum[:])},
		},
		{
			name:    "ok/negative size limit never hashes",
			cfg:     UnixConfig{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1},
			want:    []string{"unix:path:" + exe},
			notWant: []string{"unix:sha256:"},
		},
		{
			name: "ok/size limit above the binary",
			cfg:  UnixConfig{DiscoverWorkloadPath: true, WorkloadSizeLimit: int64(len(body))},
			want: []string{"unix:sha256:" + hex.EncodeToString(sum[:])},
		},
		{
			name:    "fail/size limit below the binary",
			cfg:     UnixConfig{DiscoverWorkloadPath: true, WorkloadSizeLimit: 1},
			wantErr: "exceeds size limit",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewUnix(tt.cfg).Attest(ctx, pid)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("selectors %v lack %q", got, w)
				}
			}
			for _, nw := range tt.notWant {
				for _, s := range got {
					if strings.HasPrefix(s, nw) {
						t.Errorf("selectors have unexpected %q", s)
					}
				}
			}
			if u, err := user.Current(); err == nil && !slices.Contains(got, "unix:user:"+u.Username) {
				t.Errorf("selectors %v lack unix:user:%s", got, u.Username)
			}
		})
	}
}

// fakeProc writes /proc/<pid>/status under a temp dir.
func fakeProc(t *testing.T, pid int, status string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, strconv.Itoa(pid))
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUnixAttestStatus(t *testing.T) {
	ctx := context.Background()
	names := map[string]string{"1000": "alice", "100": "users", "27": "sudo"}
	lookup := func(id string) (string, bool) { n, ok := names[id]; return n, ok }

	for _, tt := range []struct {
		name    string
		status  string
		want    []string
		wantErr string
	}{
		{
			name:   "ok/effective ids and supplementary groups in SPIRE's order",
			status: "Name:\tapp\nUid:\t0\t1000\t1000\t1000\nGid:\t0\t100\t100\t100\nGroups:\t27 44 \n",
			want: []string{
				"unix:uid:1000", "unix:user:alice", "unix:gid:100", "unix:group:users",
				"unix:supplementary_gid:27", "unix:supplementary_group:sudo", "unix:supplementary_gid:44",
			},
		},
		{
			name:   "ok/single ids, no groups, unknown names",
			status: "Uid:\t4242\nGid:\t4343\nGroups:\t\n",
			want:   []string{"unix:uid:4242", "unix:gid:4343"},
		},
		{name: "fail/no uid", status: "Gid:\t1\n", wantErr: "UIDs lookup: no UIDs for process"},
		{name: "fail/no gid", status: "Uid:\t1\n", wantErr: "GIDs lookup: no GIDs for process"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := NewUnix(UnixConfig{ProcDir: fakeProc(t, 77, tt.status)})
			a.lookupUser, a.lookupGroup = lookup, lookup
			got, err := a.Attest(ctx, 77)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("selectors = %v\nwant        %v", got, tt.want)
			}
		})
	}
}

func TestUnixAttestMissingProcess(t *testing.T) {
	a := NewUnix(UnixConfig{ProcDir: t.TempDir()})
	for _, pid := range []int32{0, -1, 12345} {
		if _, err := a.Attest(context.Background(), pid); err == nil {
			t.Errorf("Attest(%d): want error", pid)
		}
	}
	// discover_workload_path with an unreadable exe link.
	dir := fakeProc(t, 9, "Uid:\t1\nGid:\t1\n")
	a = NewUnix(UnixConfig{ProcDir: dir, DiscoverWorkloadPath: true})
	if _, err := a.Attest(context.Background(), 9); err == nil || !strings.Contains(err.Error(), "path lookup") {
		t.Fatalf("err = %v, want path lookup error", err)
	}
}
