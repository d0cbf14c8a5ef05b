//go:build unix

package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// flock is syscall.Flock; a test stands in a file system that has no locks.
var flock = syscall.Flock

// errDataDirInUse marks a data directory another run holds.
var errDataDirInUse = errors.New("data directory in use")

// lockDataDir takes the data directory for this run, or says which run has
// it. Two runs on one directory (the second on another -port, so no port
// stops it) are not two platforms: the second empties the first's JetStream
// store while the first runs on it, and then waits on etcd's lock of its
// database, silently and for good (etcd's start does not watch for Ctrl-C).
// The lock is flock(2) on <dir>/.lock, which the kernel drops with the
// process that held it: a directory left by a run that was killed is free
// again at once, with no stale lock file to remove by hand. The file is nil
// where the file system has no locks: the run goes on unguarded.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another run"
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(holder))); perr == nil {
				who = fmt.Sprintf("another run (pid %d)", pid)
			}
			return nil, fmt.Errorf("%w: %s is used by %s; stop it, or give this run another -data", errDataDirInUse, dir, who)
		}
		if errors.Is(err, syscall.ENOLCK) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOTSUP) {
			// The file system has no locks (NFS without a lock manager,
			// some FUSE and shared-folder mounts). The lock only guards
			// against a second run here, so the run goes on unguarded
			// rather than be refused on every such directory.
			slog.Warn("data directory cannot be locked: a second run on it would not be refused",
				"dir", dir, "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	// Who holds it, for the message above; a failure here costs only that.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
