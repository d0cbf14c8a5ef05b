package agent

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
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
	attachSeenEarlier(t, a, first)
	attachSeenEarlier(t, a, second)

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

// TestRetiredCountsStayWithTheirProcess: a target that exec'd into a file the agent does not probe keeps the first
// executable's counts once that is detached, but they are its own, not its pid's. The kernel does not report the
// exit of a process running an unprobed file, and a target started on the freed pid before a scan found it gone
// inherited the old process's pauses, kept by pid alone.
func TestRetiredCountsStayWithTheirProcess(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	first, other := filepath.Join(dir, "xretire-first"), filepath.Join(dir, "xretire-other")
	copyFile(t, build(t, "testdata/execer", "execer-first", false), first)
	copyFile(t, build(t, "testdata/execer", "execer-first", false), other)
	bin := buildTarget(t, false)
	a := newAgentWith(t, Config{Grace: time.Millisecond}, filepath.Base(first), bin)
	attachSeenEarlier(t, a, first)

	cmd, _, _ := startProgram(t, first, "5", other, "0") // prints once it runs the unprobed copy
	pid := cmd.Process.Pid
	pauses := func() uint64 {
		s, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return s.STW[pid].Count
	}
	eventually(t, func() (bool, string) {
		return pauses() >= 10, "the first executable's 5 GCs are not counted yet" // two pauses each
	})
	a.Scan() // no process runs the first executable: detached, its counts of pid kept
	if n := pauses(); n < 10 {
		t.Fatalf("pid %d has %d pauses after the first executable's detach, want its 5 GCs' kept", pid, n)
	}

	cmd.Process.Kill()
	cmd.Wait()
	tg := startTargetAt(t, bin, pid) // before any scan finds the old process gone
	a.Scan()
	own, err := strconv.ParseUint(strings.TrimSpace(tg.get(t, &http.Client{}, "GET", "/pauses")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if n := pauses(); n > own {
		t.Errorf("pid %d, a new process with %d pauses of its own, has %d: the old process's inherited", pid, own, n)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.retired.STW); n != 0 {
		t.Errorf("%d processes' pauses still kept after the process exited and its pid was taken", n)
	}
}

func TestParseStatStart(t *testing.T) {
	for line, want := range map[string]uint64{
		"42 (target) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 5 0 987654 1000 200 18446744073709551615":  987654,
		"7 (a) b (c)) R 1 7 7 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 5 0 12 1000 200 18446744073709551615 0 0 0": 12,
	} {
		if got, err := parseStatStart([]byte(line)); err != nil || got != want {
			t.Errorf("parseStatStart(%q) = %d, %v, want %d", line, got, err, want)
		}
	}
	if _, err := parseStatStart([]byte("42 (target) S 1 2")); err == nil {
		t.Error("a short stat line was read")
	}
}

// attachSeenEarlier probes bin as a scan that saw a process run it a second ago would have: the next scan finds its
// grace over (Config.Grace of a millisecond) unless a process runs it then.
func attachSeenEarlier(t *testing.T, a *Agent, bin string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(bin, &st); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastSeen[statID(&st)] = time.Now().Add(-time.Second)
	a.attach(context.Background(), bin, bin, statID(&st))
}
