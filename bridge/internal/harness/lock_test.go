package harness

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// TestHoldPulsarKeepsOthersOutAndLetsItsOwnTestsIn: once a process holds the lock (HoldPulsar), another descriptor,
// as another test binary has, cannot take it even shared, and LockPulsar in the holding process returns at once
// instead of waiting for itself.
func TestHoldPulsarKeepsOthersOutAndLetsItsOwnTestsIn(t *testing.T) {
	module := lockPath
	lockPath = filepath.Join(t.TempDir(), "pulsar.lock") // not the module's lock: other binaries may be using it
	t.Cleanup(func() { lockPath = module; held.Store(nil) })
	if err := HoldPulsar(); err != nil {
		t.Fatal(err)
	}
	other, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("shared flock by another descriptor while held = %v, want EWOULDBLOCK", err)
	}
	// The hold outlives a collection: an unreferenced descriptor's finalizer would close it and drop the lock.
	runtime.GC()
	runtime.GC()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("shared flock by another descriptor after a collection = %v, want EWOULDBLOCK", err)
	}
	// A LockPulsar that waited for the hold would never return: go test's -timeout reports it.
	LockPulsar(t, true)
	LockPulsar(t, false)
}
