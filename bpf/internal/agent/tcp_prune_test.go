package agent

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// TestTCPCountsOfTheNextProcessSurviveTheExitPrune: a probed process exits and, before the agent's next scan or
// scrape, a new process gets its pid and connects. The kernel deleted the exited process's tcp entry at its exit, and
// the new process's connect made a fresh one; the agent, told of the exit, must not delete that fresh entry too (it
// did: the new process's opens were gone at the next scan, its counter reset to zero while it was running).
func TestTCPCountsOfTheNextProcessSurviveTheExitPrune(t *testing.T) {
	requireRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := ownCopy(t, exe)
	a := newAgent(t, bin)

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
