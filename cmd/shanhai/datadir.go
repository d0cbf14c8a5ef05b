//go:build unix

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// errDataDirInUse marks a data directory another run holds.
var errDataDirInUse = errors.New("data directory in use")

// lockDataDir takes the data directory for this run, or says which run has
// it. Two runs on one directory (the second on another -port, so no port
// stops it) are not two platforms: the second empties the first's JetStream
// store while the first runs on it, and then waits on etcd's lock of its
// database, silently and for good (etcd's start does not watch for Ctrl-C).
// The lock is flock(2) on <dir>/.lock (lockFile): a directory left by a run
// that was killed is free again at once, with no stale lock file to remove
// by hand. The file is nil where the file system has no locks: the run goes
// on unguarded.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	f, holder, err := lockFile(filepath.Join(dir, ".lock"))
	switch {
	case errors.Is(err, errHeld):
		return nil, fmt.Errorf("%w: %s is used by another run%s; stop it, or give this run another -data", errDataDirInUse, dir, pidSuffix(holder))
	case errors.Is(err, errNoLocks):
		// The lock only guards against a second run here, so the run
		// goes on unguarded rather than be refused on every such directory.
		slog.Warn("data directory cannot be locked: a second run on it would not be refused", "dir", dir, "err", err)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("data dir %w", err)
	}
	return f, nil
}
