package agent

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWriterDuringLeaseTakeIsLetGo: a writer that opens a probed executable in the moment between the agent setting
// its read lease and registering the lease's guard must be let go by the agent, not left to wait out the kernel's
// fs.lease-break-time (45 s by default). Its SIGIO came before the watch knew the guard, so nobody yielded the lease.
// Needs no BPF: the lease is the agent's own, on a file the test owns.
func TestWriterDuringLeaseTakeIsLetGo(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/fs/lease-break-time")
	if err != nil {
		t.Fatal(err)
	}
	breakTime, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if breakTime < 4 {
		t.Skipf("fs.lease-break-time is %d s: the kernel lets the writer go about as soon as the agent would", breakTime)
	}
	p, f, s := leaseFixture(t)
	wrote := make(chan error, 1)
	s.leased = func(f *os.File) {
		go func() {
			w, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err == nil {
				err = w.Close()
			}
			wrote <- err
		}()
		// The writer's open is waiting on the lease once the kernel marks it as going.
		for {
			lease, err := fcntl(f, syscall.F_GETLEASE, 0)
			if err != nil {
				t.Error(err)
				return
			}
			if lease == syscall.F_UNLCK {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	g, err := s.take(f)
	switch {
	case errors.Is(err, syscall.EAGAIN):
	case err != nil:
		t.Fatalf("take: %v", err)
	default:
		defer g.release()
	}
	// Half the break time: a writer let go by the kernel, not the agent, comes later.
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-time.After(time.Duration(breakTime) * time.Second / 2):
		t.Fatalf("the writer still waits on the lease after %d s: the agent never let it go", breakTime/2)
	}
}

// TestLeaseCheckErrorIsNotAWriter: an error of take's F_GETLEASE check is reported as itself, not as EAGAIN, which
// says a writer has the file and had the caller wait for a write that never comes (retrying at every scan, logged
// at debug level only). The lease goes and no guard is left for a SIGIO to ask about. Needs no BPF.
func TestLeaseCheckErrorIsNotAWriter(t *testing.T) {
	t.Parallel()
	_, f, s := leaseFixture(t)
	s.leased = func(f *os.File) { f.Close() } // the check's fcntl then fails: not a writer
	g, err := s.take(f)
	if g != nil {
		g.release()
	}
	if err == nil || errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("take = %v, want the check's own error", err)
	}
	s.mu.Lock()
	left := len(s.guards)
	s.mu.Unlock()
	if left != 0 {
		t.Errorf("%d guards left registered after a failed take", left)
	}
}

// leaseFixture is a file the test owns at p, open read-only as f for a lease, and a lease set to take it with; both
// are closed at the test's end.
func leaseFixture(t *testing.T) (p string, f *os.File, s *leaseSet) {
	t.Helper()
	p = filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(p, []byte("build 1"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	s = newLeaseSet(slog.New(slog.DiscardHandler))
	t.Cleanup(s.close)
	return p, f, s
}
