//go:build unix

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// flock is syscall.Flock; a test stands in a file system that has no locks.
var flock = syscall.Flock

// errHeld is lockFile's refusal: another process holds the lock.
var errHeld = errors.New("held by another process")

// errNoLocks is lockFile's error where the file system has no locks (NFS
// without a lock manager, some FUSE and shared-folder mounts).
var errNoLocks = errors.New("file system without locks")

// lockFile takes an exclusive flock(2) on path, creating the file, and
// writes this process's pid into it for the message of the next one to
// try. The kernel drops the lock with the process that held it, even a
// killed one, so a lock is never stale. When the lock is held, the error
// wraps errHeld and holder is the pid written there (0 when unreadable).
//
// The port locks' directory is shared by every user (/tmp/shanhai-ports),
// so the file is opened with O_NOFOLLOW: a symbolic link planted there by
// another user would otherwise have this run truncate the file it points
// at to write its pid (the kernel's fs.protected_symlinks does not stop it
// when that user also made the directory). And the file is made readable
// by all whatever the umask: another user's run opens it read-only to lock
// it, and a 0600 file left by a killed run would refuse that run for good.
func lockFile(path string) (f *os.File, holder int, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if errors.Is(err, os.ErrPermission) {
		// Another user's file in a shared directory: a lock needs no
		// write access, only the pid would not be written.
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	if errors.Is(err, syscall.ELOOP) {
		return nil, 0, fmt.Errorf("lock %s: a symbolic link, not a lock file; remove it: %w", path, err)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Chmod(0o644) // another user's file: theirs to keep readable
	if err := flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		content, _ := os.ReadFile(path)
		f.Close()
		holder, _ = strconv.Atoi(string(bytes.TrimSpace(content)))
		switch {
		case errors.Is(err, syscall.EWOULDBLOCK):
			return nil, holder, fmt.Errorf("lock %s: %w", path, errHeld)
		case errors.Is(err, syscall.ENOLCK) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOTSUP):
			return nil, 0, fmt.Errorf("lock %s: %w: %w", path, errNoLocks, err)
		}
		return nil, 0, fmt.Errorf("lock %s: %w", path, err)
	}
	// Who holds it, for the message above; a failure here costs only that.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, 0, nil
}

// pidSuffix is " (pid N)" for a lock's holder, or nothing when unknown.
func pidSuffix(pid int) string {
	if pid > 0 {
		return fmt.Sprintf(" (pid %d)", pid)
	}
	return ""
}
