package agent

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestExecBetweenPathAndFileIsNotATarget: the scan reads a process's executable path, matches it against the
// targets, then stats the file. A target that execs another program in between (the pid stays; a pid another program
// takes is the same) was paired with the other program's file, and the agent attached its probes to that file, a
// non-target, under the target's name. A non-target must not be found.
func TestExecBetweenPathAndFileIsNotATarget(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := ownCopy(t, exe)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	h := startHelper(t, bin, "TestExecOnSignalProcess", execOnSignalEnv+"="+sleep)
	h.await(t, "ready")
	var st syscall.Stat_t
	if err := syscall.Stat(bin, &st); err != nil {
		t.Fatal(err)
	}
	want := statID(&st)
	execd := false
	found := scanProcs([]string{bin}, map[fileKey]bool{want.fileKey: true}, os.Getpid(), func(pid int) {
		if pid != h.pid || execd {
			return
		}
		execd = true
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() (bool, string) {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			return err == nil && link != bin, fmt.Sprintf("pid %d still runs %s (%v)", pid, link, err)
		})
	})
	if !execd {
		t.Fatalf("the scan never came to the helper (pid %d)", h.pid)
	}
	for _, p := range found {
		if p.pid == h.pid {
			t.Fatalf("pid %d, which runs %s now, found as a target: %+v (the target's file is %+v)", p.pid, sleep, p, want)
		}
	}
}

// execOnSignalEnv names the program TestExecOnSignalProcess execs.
const execOnSignalEnv = "SHANHAI_TEST_EXEC_ON_SIGNAL"

// TestExecOnSignalProcess is not a test: it is the helper of TestExecBetweenPathAndFileIsNotATarget when run by it
// with execOnSignalEnv set, and does nothing otherwise. It prints "ready", then execs that program at SIGUSR1.
func TestExecOnSignalProcess(t *testing.T) {
	prog := os.Getenv(execOnSignalEnv)
	if prog == "" {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	fmt.Println("ready")
	select {
	case <-sig:
	case <-time.After(time.Minute):
		t.Fatal("no SIGUSR1")
	}
	if err := syscall.Exec(prog, []string{prog, "60"}, os.Environ()); err != nil {
		t.Fatal(err)
	}
}
