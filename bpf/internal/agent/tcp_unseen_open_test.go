package agent

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// TestTCPOpenNoProgramSaw: a connect whose SYN_SENT -> ESTABLISHED no state change program saw, and whose SYN
// retransmits no retransmit program saw, is counted open once with every segment it retransmitted, by the agent's
// socket iterator (tcp.c's recount), at every later read without counting it again. As in
// TestSYNRetransmitsAreCounted/open, whose open this machine's softirqs lost once (Active:0, README): the dialler's SYN
// finds the listener's accept queue full, and is retransmitted until the test makes room. The programs are taken off
// once the dialler's SYN_SENT has made its owner, so that neither the open (handled in the retransmit timer's softirq)
// nor the retransmits are seen by them.
func TestTCPOpenNoProgramSaw(t *testing.T) {
	bin, a := probedSelf(t, Config{})
	if a.sys.recount == nil {
		t.Fatalf("no tcp socket iterator: kernel before %v?", recountSince)
	}
	ln := newFullListener(t)
	d := startSYNDialer(t, bin, ln.addr, "open")
	eventually(t, func() (bool, string) {
		var key uint64
		var o tcp.BpfOwner
		for it := a.sys.tcp.Owners.Iterate(); it.Next(&key, &o); {
			if int(o.Tgid) == d.pid {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no socket owner of the dialler, pid %d", d.pid)
	})
	reattach := detachTCP(t, a, true)
	d.await(t, "retransmitted")
	a.Scan()
	ln.acceptOne(t) // room for the next retransmitted SYN: the connection opens
	n, err := strconv.ParseUint(d.await(t, "total_retrans"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	want := TCPStats{Active: 1, Retransmits: n}
	for range 5 { // once, whatever the number of reads
		eventually(t, func() (bool, string) {
			got := tcpOf(t, a, d.pid)
			if got.Active > 1 || got.Retransmits > n {
				t.Fatalf("counted twice: got %+v, want %+v", got, want)
			}
			return got == want, fmt.Sprintf("pid %d's connect, opened unseen after %d SYN retransmits: got %+v, want %+v",
				d.pid, n, got, want)
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
