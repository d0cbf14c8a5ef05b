package agent

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"unsafe"
)

// TestTCPCountsOfTheNextProcessSurviveTheExitPrune: a probed process exits and, before the agent's next scan or
// scrape, a new process gets its pid and connects. The kernel deleted the exited process's tcp entry at its exit, and
// the new process's connect made a fresh one; the agent, told of the exit, must not delete that fresh entry too (it
// did: the new process's opens were gone at the next scan, its counter reset to zero while it was running).
func TestTCPCountsOfTheNextProcessSurviveTheExitPrune(t *testing.T) {
	bin, a := probedSelf(t, Config{})

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var conns []net.Conn // held open until the listener closes, so the helpers' connections stay up
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()

	old := startHolder(t, bin, ln.Addr().String(), 0)
	a.Scan() // attaches bin: the exits of its processes are reported to the agent from here on
	old.await(t, "fd")
	eventually(t, func() (bool, string) {
		got := tcpOf(t, a, old.pid)
		return got == TCPStats{Active: 1}, fmt.Sprintf("first process (pid %d): got %+v, want one active open", old.pid, got)
	})
	pid := old.pid
	old.stop(t) // reported in the exits ring; no scan or scrape reads it before the next process has counted

	next := startHolderAt(t, bin, ln.Addr().String(), pid)
	next.await(t, "fd") // its connect returned: the open is counted under pid
	a.Scan()
	if got := tcpOf(t, a, pid); got != (TCPStats{Active: 1}) {
		t.Errorf("new process at pid %d after the scan that handled the old one's exit: got %+v, want its own active open", pid, got)
	}
}

// TestSeriesOfTheNextProcessSurviveTheExitPrune: as for tcp, a target exits and, before the agent's next scan or
// scrape, a new target gets its pid, serves requests and pauses for GC. Their series sit in per-CPU slots that name
// the pid; the kernel freed the exited process's copies at its exit (include/procexit.h), so every copy naming the pid
// now is the new process's, and the agent, told of the exit, must not free them.
func TestSeriesOfTheNextProcessSurviveTheExitPrune(t *testing.T) {
	bin := buildTarget(t, false)
	a := newAgent(t, bin)
	a.Scan()
	old := startTarget(t, bin)
	a.Scan()
	c := &http.Client{}
	old.get(t, c, "GET", "/work")
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		return s.ServerTotal(old.pid) == 1, fmt.Sprintf("first process (pid %d): %d requests, want 1", old.pid, s.ServerTotal(old.pid))
	})
	c.CloseIdleConnections()
	pid := old.pid
	old.stop() // reported in the exits ring; no scan or scrape reads it before the next process has counted

	// The new process serves on every CPU in turn, so that its series have a copy on each: a slot is freed only
	// when no CPU's copy of it is free or a live process's.
	next := startTargetAt(t, bin, pid)
	const each = 5
	for cpu := range runtime.NumCPU() {
		pinThreads(t, pid, cpu)
		for range each {
			next.get(t, c, "GET", "/gc?n=1")
		}
	}
	c.CloseIdleConnections()
	want := uint64(each * runtime.NumCPU())
	t.Logf("slot copies naming pid %d before the scan: %v", pid, slotCopies(t, a, pid))
	a.Scan()
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		return s.ServerTotal(pid) == want && s.STW[pid].Count >= 2*want,
			fmt.Sprintf("new process at pid %d after the scan that handled the old one's exit: %d requests (want %d), %d pauses (want %d or more)",
				pid, s.ServerTotal(pid), want, s.STW[pid].Count, 2*want)
	})
}

// pinThreads runs every thread of process pid on cpu alone (sched_setaffinity; threads it starts later inherit it).
func pinThreads(t *testing.T, pid, cpu int) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	mask := uint64(1) << cpu
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
		if errno != 0 && errno != syscall.ESRCH {
			t.Fatalf("pin thread %d of pid %d to CPU %d: %v", tid, pid, cpu, errno)
		}
	}
}
