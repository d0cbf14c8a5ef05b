package agent

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// TestTCPOpenNoProgramSaw: a connect whose SYN_SENT -> ESTABLISHED no state change program saw, and whose SYN
// retransmits no retransmit program saw, is counted open once with every segment it retransmitted, by the agent's
// socket iterator (tcp.c's recount), at every later read without counting it again. As in
// TestSYNRetransmitsAreCounted/open, whose open this machine's softirqs lost once (Active:0, README): the dialler's SYN
// finds the listener's accept queue full, and is retransmitted until the test makes room. The programs are taken off
// once the dialler's SYN_SENT has made its owner, so that neither the open (handled in the retransmit timer's softirq)
// nor the retransmits are seen by them.
//
// In another network namespace, as in a container, the agent runs recount from a thread moved into it (inNetns).
// And an owner whose addresses are not its socket's (a stale owner, whose socket was freed unseen and its memory given
// to another connection, here made by rewriting the dialler's owner) is not taken for that socket: nothing is counted.
func TestTCPOpenNoProgramSaw(t *testing.T) {
	t.Run("own netns", func(t *testing.T) { testTCPOpenNoProgramSaw(t, false, false) })
	t.Run("another netns", func(t *testing.T) { testTCPOpenNoProgramSaw(t, true, false) })
	t.Run("stale owner", func(t *testing.T) { testTCPOpenNoProgramSaw(t, false, true) })
}

func testTCPOpenNoProgramSaw(t *testing.T, otherNetns, stale bool) {
	bin, a := probedSelf(t, Config{})
	if a.sys.recount == nil {
		t.Fatalf("no tcp socket iterator: kernel before %v?", recountSince)
	}
	var ln *fullListener
	netns := ""
	if otherNetns {
		netns = newNetns(t)
		onThreadIn(t, netns, func() { ln = newFullListener(t) })
	} else {
		ln = newFullListener(t)
	}
	d := startSYNDialerIn(t, netns, bin, ln.addr, "open")
	var (
		key uint64
		o   tcp.BpfOwner
	)
	eventually(t, func() (bool, string) {
		for it := a.sys.tcp.Owners.Iterate(); it.Next(&key, &o); {
			if int(o.Tgid) == d.pid {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no socket owner of the dialler, pid %d", d.pid)
	})
	reattach := detachTCP(t, a, true)
	if stale {
		o.Daddr[0]++ // 127.0.0.1 -> 128.0.0.1
		if err := a.sys.tcp.Owners.Update(key, &o, ebpf.UpdateExist); err != nil {
			t.Fatal(err)
		}
	}
	d.await(t, "retransmitted")
	a.Scan()
	ln.acceptOne(t) // room for the next retransmitted SYN: the connection opens
	n, err := strconv.ParseUint(d.await(t, "total_retrans"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	want := TCPStats{Active: 1, Retransmits: n}
	if stale {
		want = TCPStats{}
	}
	for range 5 { // once, whatever the number of reads
		eventually(t, func() (bool, string) {
			got := tcpOf(t, a, d.pid)
			if got.Active > want.Active || got.Retransmits > want.Retransmits {
				t.Fatalf("more than made (counted twice, or a stale owner taken for the socket): got %+v, want %+v", got, want)
			}
			return got == want, fmt.Sprintf("pid %d's connect, opened unseen after %d SYN retransmits (stale owner: %t): got %+v, want %+v",
				d.pid, n, stale, got, want)
		})
	}
	// Seen again, nothing more is counted for it: set_state finds the owner open.
	reattach()
	for range 3 {
		if got := tcpOf(t, a, d.pid); got != want {
			t.Fatalf("after the programs came back: got %+v, want %+v", got, want)
		}
	}
}

// newNetns makes a network namespace with its loopback up, held by a process until the test ends, and returns its
// path.
func newNetns(t *testing.T) string {
	t.Helper()
	cmd, line, _ := startProgram(t, "unshare", "-n", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600")
	if line != "up" {
		t.Fatalf("network namespace holder printed %q, want up", line)
	}
	return fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
}

// onThreadIn runs f on the calling goroutine's thread moved into the network namespace at path netns, and moves the
// thread back after, so that the sockets f makes are that namespace's. A t.Fatal in f ends the goroutine with its
// thread still locked, and the runtime then ends the thread: no other goroutine runs in that namespace.
func onThreadIn(t *testing.T, netns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	back, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	to, err := os.Open(netns)
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	if err := unix.Setns(int(to.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	f()
	if err := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	runtime.UnlockOSThread()
}
