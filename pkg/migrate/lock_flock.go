//go:build unix && !aix && !solaris

package migrate

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive lock on the file path, made if missing, trying again every lockPoll until ctx ends;
// unlock releases it, as the end of the process does. It is flock's lock, which belongs to the open file: two pools
// of one process exclude each other as two processes do (fcntl's locks are the process's, shared by its pools).
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	// Read-only is enough for flock, and lets a user who cannot write the file made by another still wait on it.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing the file releases its lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}

// lockPoll is how often a process waiting for another's migrations tries the lock again: short beside any migration,
// and one system call a try.
const lockPoll = 20 * time.Millisecond
