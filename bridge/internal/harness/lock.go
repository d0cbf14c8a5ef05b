package harness

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// LockPulsar serialises this module's tests around Pulsar: go test runs
// packages in parallel, and the fault test restarts (or freezes) Pulsar, which
// would fail another package's test that is reading the archive at that
// moment. Readers take it shared, the fault test exclusive; it is released
// when the test ends.
func LockPulsar(t testing.TB, exclusive bool) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "shanhai-bridge-pulsar.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("pulsar test lock: %v", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatalf("pulsar test lock: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() })
}
