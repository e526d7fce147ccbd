package endpoints

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Modes of the admin socket and of the directory created for it
// (ARCHITECTURE §7: the admin API is reachable by its owner and group only).
const (
	SocketDirMode fs.FileMode = 0o770
	SocketMode    fs.FileMode = 0o660
)

// listenUnix opens the admin socket at path. Missing parent directories are
// created with mode 0770; a stale socket left by a crashed server is
// removed, but a socket another process still serves is not (error), nor is
// any other kind of file. The socket gets mode 0660.
func listenUnix(path string, log *slog.Logger) (*net.UnixListener, error) {
	if path == "" {
		return nil, errors.New("endpoints: admin socket path is empty")
	}
	dir := filepath.Dir(path)
	if err := mkdirs(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o007 != 0 {
		log.Warn("Admin socket directory is accessible to other users", slog.String("path", dir), slog.String("mode", fi.Mode().Perm().String()))
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("endpoints: listen on admin socket: %w", err)
	}
	l.SetUnlinkOnClose(true)
	if err := os.Chmod(path, SocketMode); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("endpoints: set admin socket mode: %w", err)
	}
	return l, nil
}

// mkdirs creates dir and its missing parents with SocketDirMode, whatever
// the umask; existing directories are left as they are.
func mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("endpoints: admin socket directory: %w", err)
	}
	if err := mkdirs(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, SocketDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("endpoints: create admin socket directory: %w", err)
	}
	if err := os.Chmod(dir, SocketDirMode); err != nil {
		return fmt.Errorf("endpoints: set admin socket directory mode: %w", err)
	}
	return nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("endpoints: admin socket: %w", err)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("endpoints: admin socket path %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("endpoints: admin socket %s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("endpoints: remove stale admin socket: %w", err)
	}
	return nil
}
