package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInNetnsMovesTheThreadBack: the thread inNetns moved into another network namespace is back in the agent's when
// the runtime gets it again, and no thread of the agent is left in that namespace. It was left to end with its
// goroutine, and the runtime cannot end the main thread: when f's goroutine ran there, the main thread was wedged in
// the other namespace for good (/proc/<agent>/ns/net named it, and kept it alive). Each thread that ran f must be alive
// and in the agent's namespace; which thread the runtime picks is its own choice, so every thread is checked too.
func TestInNetnsMovesTheThreadBack(t *testing.T) {
	requireRoot(t)
	own, err := netnsOf()
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscanf(newNetns(t), "/proc/%d/ns/net", &pid); err != nil {
		t.Fatal(err)
	}
	ran := map[int]bool{}
	for range 20 {
		err := inNetns(pid, 0, func() error {
			if n, err := netnsOf(); err != nil || n == own {
				return errors.Join(err, errors.New("f runs in the agent's network namespace"))
			}
			ran[unix.Gettid()] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for tid := range ran {
		if n, err := threadNetns(tid); err != nil || n != own {
			t.Errorf("thread %d, which ran f: network namespace %d (%v), want the agent's, %d", tid, n, err, own)
		}
	}
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		var tid int
		fmt.Sscanf(filepath.Base(task), "%d", &tid)
		if n, err := threadNetns(tid); err == nil && n != own {
			t.Errorf("thread %d (main thread: %v) left in network namespace %d, want the agent's, %d", tid, tid == os.Getpid(), n, own)
		}
	}
}

// threadNetns is the inode number of the network namespace of thread tid of this process.
func threadNetns(tid int) (uint32, error) {
	fi, err := os.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", tid))
	if err != nil {
		return 0, err
	}
	return uint32(fi.Sys().(*syscall.Stat_t).Ino), nil
}
