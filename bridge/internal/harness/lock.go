package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// lockPath is the Pulsar test lock's file, shared by every test binary of this module on the machine.
var lockPath = filepath.Join(os.TempDir(), "shanhai-bridge-pulsar.lock")

// held is the lock file once this process holds it exclusively until it exits (HoldPulsar). Kept referenced: its
// finalizer would otherwise close it once nothing refers to it, and so drop the lock.
var held atomic.Pointer[os.File]

// LockPulsar serialises this module's tests around Pulsar: go test runs
// packages in parallel, and the fault test restarts (or freezes) Pulsar, which
// would fail another package's test that is reading the archive at that
// moment. Readers take it shared, the fault test exclusive; it is released
// when the test ends. In a process that holds it already (HoldPulsar) it takes
// nothing: a second flock on another descriptor would wait for the first.
func LockPulsar(t testing.TB, exclusive bool) {
	t.Helper()
	if held.Load() != nil {
		return
	}
	f, err := lockPulsar(exclusive)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() })
}

// HoldPulsar takes the lock exclusively until the process exits, for the
// TestMain of a package whose tests disrupt Pulsar one after another (the
// fault test's restart and the backpressure test's freeze, under CI). Taken
// by each test, the lock was free for a moment between two of them, and the
// other packages' tests waiting for it shared it first (they all wake at once,
// and run a minute): the second disruptive test then waited for all of them,
// and the tests queued behind it for that test as well.
func HoldPulsar() error {
	if held.Load() != nil {
		return nil
	}
	f, err := lockPulsar(true)
	if err != nil {
		return err
	}
	held.Store(f) // open until the process exits, which releases the lock
	return nil
}

func lockPulsar(exclusive bool) (*os.File, error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("pulsar test lock: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("pulsar test lock: %w", err)
	}
	return f, nil
}
