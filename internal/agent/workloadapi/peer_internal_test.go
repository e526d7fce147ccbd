package workloadapi

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestStartTime(t *testing.T) {
	dir := t.TempDir()
	write := func(pid int, stat string) {
		p := filepath.Join(dir, strconv.Itoa(pid))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fields := "S 1 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 8 0 98765 100000 100 18446744073709551615"
	write(1, "1 (plain) "+fields)
	write(2, "2 (a) b) (c) "+fields) // name with spaces and parentheses
	write(3, "3 (short) S 1 2")
	write(4, "4 no parens "+fields)
	for _, tt := range []struct {
		name    string
		pid     int32
		want    string
		wantErr string
	}{
		{name: "ok/plain", pid: 1, want: "98765"},
		{name: "ok/tricky name", pid: 2, want: "98765"},
		{name: "fail/short", pid: 3, wantErr: "bad stat data"},
		{name: "fail/no parens", pid: 4, wantErr: "not parenthesized"},
		{name: "fail/missing", pid: 5, wantErr: "could not read caller stat"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := startTime(dir, tt.pid)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("startTime = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// The real /proc of this process parses.
	if _, err := startTime("/proc", int32(os.Getpid())); err != nil {
		t.Fatalf("real /proc: %v", err)
	}
}

// TestProcWatcherDetectsExit_T6: T6. A watched process that exits is no
// longer alive, even before its PID is reused.
func TestProcWatcherDetectsExit_T6(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a child: %v", err)
	}
	pid := int32(cmd.Process.Pid)
	w, err := newProcWatcher("/proc", caller{PID: pid, UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.IsAlive(); err != nil {
		t.Fatalf("running child: %v", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := w.IsAlive(); err == nil {
		t.Fatal("exited child reported alive")
	}
	w.Close()
	if err := w.IsAlive(); err == nil || !strings.Contains(err.Error(), "no longer being watched") {
		t.Fatalf("closed watcher: %v", err)
	}
}

func TestProcWatcherWrongOwner_T6(t *testing.T) {
	w, err := newProcWatcher("/proc", caller{PID: int32(os.Getpid()), UID: uint32(os.Geteuid()) + 1, GID: uint32(os.Getegid())})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.IsAlive(); err == nil || !strings.Contains(err.Error(), "process uid") {
		t.Fatalf("IsAlive = %v, want uid mismatch", err)
	}
	if _, err := newProcWatcher("/proc", caller{PID: 0}); err == nil {
		t.Fatal("pid 0 accepted")
	}
}

func TestSniff(t *testing.T) {
	for _, tt := range []struct {
		name    string
		payload string
		isH2    bool
		read    string
		wantErr bool
	}{
		{name: "ok/http2 preface", payload: http2Preface + "\x00\x00", isH2: true, read: http2Preface},
		{name: "ok/http1", payload: "GET / HTTP/1.1\r\n\r\n", read: "G"},
		{name: "ok/POST diverges at the second byte", payload: "POST / HTTP/1.1\r\n", read: "PO"},
		{name: "fail/partial preface then EOF", payload: "PRI * HTTP", wantErr: true},
		{name: "fail/nothing", payload: "", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() {
				for i := range len(tt.payload) { // byte by byte: worst-case framing
					_, _ = a.Write([]byte{tt.payload[i]})
				}
				a.Close()
			}()
			isH2, read, err := sniff(b)
			b.Close()
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil || isH2 != tt.isH2 || string(read) != tt.read {
				t.Fatalf("sniff = %v %q %v; want %v %q", isH2, read, err, tt.isH2, tt.read)
			}
		})
	}
}
