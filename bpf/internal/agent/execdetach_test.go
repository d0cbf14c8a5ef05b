package agent

import (
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestExecThenDetachKeepsTheCounts: a target that execs another target keeps its pid, and its pauses are the sum of
// both executables' maps (TestExecKeepsThePausesOfBothExecutables). Named by name, the first executable is detached
// once no process has run it for BPF_DETACH_GRACE, and its maps close with it: the pid's pause count went back by
// the first runtime's pauses, a counter reset to Prometheus. The detached maps' series of live processes are kept
// until the process is gone.
func TestExecThenDetachKeepsTheCounts(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "xdetach-first"), filepath.Join(dir, "xdetach-second")
	copyFile(t, build(t, "testdata/execer", "execer-first", false), first)
	copyFile(t, build(t, "testdata/execer", "execer-second", false), second)
	a := newAgentWith(t, Config{Grace: time.Millisecond}, filepath.Base(first), filepath.Base(second))
	// Both probed before the process starts, as scans that saw each running a while ago would have (execer execs at
	// once): the scan after the exec finds the first one's grace over.
	for _, bin := range []string{first, second} {
		var st syscall.Stat_t
		if err := syscall.Stat(bin, &st); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		a.lastSeen[statID(&st)] = time.Now().Add(-time.Second)
		a.attach(bin, bin, statID(&st))
		a.mu.Unlock()
	}

	cmd, line, _ := startProgram(t, first, "5", second, "3")
	runtimeN, err := strconv.ParseUint(line, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	pauses := func() (uint64, int) {
		s, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return s.STW[pid].Count, len(a.bins)
	}
	eventually(t, func() (bool, string) {
		n, _ := pauses()
		return n == runtimeN, "pid " + strconv.Itoa(pid) + ": agent saw " + strconv.FormatUint(n, 10) +
			" pauses, the two runtimes " + strconv.FormatUint(runtimeN, 10)
	})
	a.Scan()
	if n, bins := pauses(); bins != 1 || n != runtimeN {
		t.Fatalf("after the first executable's detach (%d executables probed, want 1): pid %d has %d pauses, "+
			"the two runtimes %d", bins, pid, n, runtimeN)
	}

	cmd.Process.Kill()
	cmd.Wait()
	a.Scan()
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.retired.STW); n != 0 {
		t.Errorf("%d processes' pauses still kept after the process exited", n)
	}
}
