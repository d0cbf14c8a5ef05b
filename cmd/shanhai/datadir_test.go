//go:build unix

package main

import (
	"syscall"
	"testing"
)

// TestDataDirWithoutLocksIsStillUsed: some file systems refuse flock(2)
// outright (NFS mounted without a lock manager answers ENOLCK, several FUSE
// and shared-folder mounts EOPNOTSUPP). The lock only guards against a
// second run on the same directory, so such a directory must still take a
// run, unguarded, rather than refuse every run on it.
func TestDataDirWithoutLocksIsStillUsed(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOLCK, syscall.EOPNOTSUPP} {
		t.Run(errno.Error(), func(t *testing.T) {
			real := flock
			flock = func(int, int) error { return errno }
			t.Cleanup(func() { flock = real })

			f, err := lockDataDir(t.TempDir())
			if err != nil {
				t.Fatalf("lockDataDir on a file system without flock: %v, want the directory taken unguarded", err)
			}
			if f != nil {
				_ = f.Close()
			}
		})
	}
}
