package stack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// While another stack holds the platform lock, Start waits; cancelling its
// context (Ctrl-C in cmd/stack) must end the wait. flock without LOCK_NB
// ignored the context and blocked until the other stack stopped.
func TestStartStopsWaitingForTheLockWhenItsContextEnds(t *testing.T) {
	old := LockPath
	LockPath = filepath.Join(t.TempDir(), "lock")
	t.Cleanup(func() { LockPath = old })
	other, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Start(ctx, Options{})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Start returned %v, want an error wrapping context.Canceled", err)
		}
	case <-time.After(30 * time.Second): // hang guard only
		_ = syscall.Flock(int(other.Fd()), syscall.LOCK_UN)
		<-done
		t.Fatal("Start still waited for the lock after its context was cancelled")
	}
}

// A free lock is taken at once, and released when its file is closed, so the
// next stack can take it.
func TestLockPlatformTakesAFreeLock(t *testing.T) {
	old := LockPath
	LockPath = filepath.Join(t.TempDir(), "lock")
	t.Cleanup(func() { LockPath = old })
	for range 2 {
		f, err := lockPlatform(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// A Start that fails early (here: no etcd endpoints) releases the platform
// lock; it used to keep it when the etcd client could not be made, so the
// next stack in the same process waited forever.
func TestFailedStartReleasesTheLock(t *testing.T) {
	old := LockPath
	LockPath = filepath.Join(t.TempDir(), "lock")
	t.Cleanup(func() { LockPath = old })
	if _, err := Start(context.Background(), Options{}); err == nil {
		t.Fatal("Start without etcd endpoints succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard only
	defer cancel()
	f, err := lockPlatform(ctx)
	if err != nil {
		t.Fatalf("the lock was still held after a failed Start: %v", err)
	}
	f.Close()
}
