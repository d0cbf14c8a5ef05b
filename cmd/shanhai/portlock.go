//go:build unix

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// errPortsHeld marks a port of the block another shanhai run holds.
var errPortsHeld = errors.New("port block held by another run")

// portLockDir is where the runs of this machine lock the ports of their
// blocks: one file per port, named by its number. The ports are the
// machine's, shared by every user and session, so the directory is a fixed
// one in /tmp, not in $TMPDIR: there, two runs with different $TMPDIRs (a
// test's, or a user's own, as $XDG_RUNTIME_DIR is too) never saw each
// other's locks. Only runs in separate /tmp namespaces (systemd's
// PrivateTmp, containers) still miss each other; the port check and the
// /readyz owner check stop those.
const portLockDir = "/tmp/shanhai-ports"

// errUnsafeLockDir marks a port lock directory this run does not lock in.
var errUnsafeLockDir = errors.New("not a directory every user's runs can share")

// getuid is os.Getuid; a test stands in another user.
var getuid = os.Getuid

// lockDir makes dir, every user's and sticky as /tmp is, or checks that the
// one already there is such. Its name is fixed in the world-writable /tmp,
// so another user may have made it first: a symbolic link there would have
// this run chmod the directory it points at to 01777 and write its files
// there (fs.protected_symlinks, which stops that, is off on some machines),
// and a directory of theirs that is not sticky and world-writable either
// refuses our files or lets anyone remove the lock files we hold. Such a
// directory is errUnsafeLockDir: the run goes on without port locks rather
// than letting a planted name stop every run until /tmp is cleaned; the
// port check and the /readyz owner check still stop two runs on one block.
// A directory of ours is checked with Lstat and then chmodded by its name,
// which is safe because sticky /tmp lets no one else rename or replace it.
func lockDir(dir string) error {
	if err := os.Mkdir(dir, 0o777); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	info, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if info.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link, not followed; its owner may remove it: %w", dir, errUnsafeLockDir)
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a directory; its owner may remove it: %w", dir, errUnsafeLockDir)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner in %T", dir, info.Sys())
	}
	const shared = 0o777 | os.ModeSticky
	if int(st.Uid) == getuid() {
		// The umask took bits off Mkdir's mode: another user's run must
		// create its own files here too.
		if info.Mode()&shared != shared {
			if err := os.Chmod(dir, shared); err != nil {
				return fmt.Errorf("make %s every user's: %w", dir, err)
			}
		}
		return nil
	}
	if info.Mode()&(0o002|os.ModeSticky) != 0o002|os.ModeSticky {
		return fmt.Errorf("%s is uid %d's with mode %v, not sticky and writable by all; its owner may remove it: %w",
			dir, st.Uid, info.Mode(), errUnsafeLockDir)
	}
	return nil
}

// portLocks are the locks of a run's ports, held until release.
type portLocks []*os.File

// lockPorts takes every port of the run's block, lowest first, before the
// run starts anything, or says which run holds one. Checking that a port is
// free (checkPorts) cannot tell two runs started at once: both found the
// block free, each part then bound where it could, and when the blocks were
// split between them (the same -port, or overlapping ones) both runs
// stopped, each missing a port the other had. A lock per port, not per
// -port, also covers overlapping blocks (8080 and 8082 share 8082-8084).
// Taken lowest first and never waited for, one of two runs always gets
// them all: a run refused at port x stops at once, and the other, which
// holds x, never wants a port below x that the first holds.
//
// The locks are flock(2), which the kernel drops with the process, killed
// or not; release also removes the files. Where the file system has no
// locks, the run warns and goes on unguarded.
func lockPorts(dir string, ports []int) (portLocks, error) {
	if err := lockDir(dir); errors.Is(err, errUnsafeLockDir) {
		slog.Warn("ports not locked: a second run started at the same time on these ports would not be refused",
			"dir", dir, "err", err)
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("port locks: %w", err)
	}
	ports = slices.Sorted(slices.Values(ports))
	var locks portLocks
	for _, port := range slices.Compact(ports) {
		path := filepath.Join(dir, strconv.Itoa(port))
		f, holder, err := lockPortFile(path)
		if err == nil {
			locks = append(locks, f)
			continue
		}
		locks.release()
		switch {
		case errors.Is(err, errHeld):
			return nil, fmt.Errorf("%w: another shanhai run holds %s%s: port %d is in both blocks; stop that run, "+
				"or move this one's whole block with -port", errPortsHeld, path, pidSuffix(holder), port)
		case errors.Is(err, errNoLocks):
			slog.Warn("ports cannot be locked: a second run started at the same time on these ports would not be refused",
				"dir", dir, "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("port locks: %w", err)
	}
	return locks, nil
}

// lockPortFile is lockFile, taken again when the file it locked was removed
// meanwhile: a run releasing its ports removes the files, and the lock of a
// removed file is no one's guard.
func lockPortFile(path string) (f *os.File, holder int, err error) {
	for {
		if f, holder, err = lockFile(path); err != nil {
			return nil, holder, err
		}
		locked, err1 := f.Stat()
		named, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(locked, named) {
			return f, 0, nil
		}
		f.Close()
		if err := errors.Join(err1, err2); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, 0, fmt.Errorf("lock %s: %w", path, err)
		}
	}
}

// release removes the lock files, then drops the locks. Removing first
// keeps a run that opens a file in between from locking it: it finds the
// lock still held, or then that the file it locked is gone (lockPortFile).
func (l portLocks) release() {
	for _, f := range l {
		_ = os.Remove(f.Name())
		_ = f.Close()
	}
}
