package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// TestTCPClosesNoProgramSaw: a close that no state change program saw is counted once, by the agent's
// reconciliation with the kernel's live sockets (system.reconcile), and a close a program saw is not counted again.
// The unseen closes are made deterministically: the target's connections are opened with the programs attached,
// then set_state and set_state_spare are detached and the connections closed: the active ones by the target first
// (FIN_WAIT1, FIN_WAIT2, then at once a time-wait mini socket that sock_diag reports as FIN_WAIT2 while its full
// socket has passed CLOSE), the passive ones by the peer first (CLOSE_WAIT, LAST_ACK, CLOSE); over IPv4 and IPv6.
func TestTCPClosesNoProgramSaw(t *testing.T) {
	for _, loopback := range []string{"127.0.0.1", "::1"} {
		t.Run(loopback, func(t *testing.T) { testTCPClosesNoProgramSaw(t, loopback) })
	}
}

func testTCPClosesNoProgramSaw(t *testing.T, loopback string) {
	const n = 10
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{}, bin)
	tg := startTarget(t, bin, "HTTP_ADDR="+net.JoinHostPort(loopback, "0"))
	a.Scan()

	// A listener in the test process that the target dials and that holds what it accepts, so that the target
	// closes its dialled ends first.
	ln, accepted, c, base := holdingPeer(t, a, tg, loopback, n)

	// open makes n active connections of the target, which it holds, and n passive ones, and returns the test's
	// ends of them: peers of the active ones, of the passive ones.
	open := func() (peers, dialled []net.Conn) {
		tg.get(t, c, "GET", "/dial?hold=1&n="+strconv.Itoa(n)+"&addr="+url.QueryEscape(ln.Addr().String()))
		for range n {
			peers = append(peers, <-accepted)
		}
		for range n {
			conn, err := net.Dial("tcp", tg.base[len("http://"):])
			if err != nil {
				t.Fatal(err)
			}
			dialled = append(dialled, conn)
		}
		return peers, dialled
	}
	// closeAll has the target close its active connections and closes the test's ends of the passive ones. The
	// peers of the active ones stay open, so that the target's ends stay time-wait mini sockets in FIN_WAIT2.
	closeAll := func(dialled []net.Conn) {
		tg.get(t, c, "GET", "/release")
		for _, conn := range dialled {
			conn.Close()
		}
	}
	closePeers := func(peers []net.Conn) {
		for _, conn := range peers {
			conn.Close()
		}
	}
	exactly := func(want TCPStats) { t.Helper(); tcpExactly(t, a, tg.pid, base, want) }

	peers, dialled := open()
	for range 5 { // open, not closed: every scrape checks them with sock_diag
		exactly(TCPStats{Active: n, Passive: n})
	}
	reattach := detachStateChanges(t, a)
	closeAll(dialled)
	exactly(TCPStats{Active: n, Passive: n, Closed: 2 * n})
	closePeers(peers)

	// Seen by the programs again, each close is counted by them alone.
	reattach()
	peers, dialled = open()
	closeAll(dialled)
	for range 5 {
		exactly(TCPStats{Active: 2 * n, Passive: 2 * n, Closed: 4 * n})
	}
	closePeers(peers)
}

// tcpExactly waits for pid's counts since base to be want (retransmits aside) and fails at once on more closes than
// want has: a close counted twice.
func tcpExactly(t *testing.T, a *Agent, pid int, base, want TCPStats) {
	t.Helper()
	eventually(t, func() (bool, string) {
		got := sub(tcpOf(t, a, pid), base)
		got.Retransmits = 0
		if got.Closed > want.Closed {
			t.Fatalf("more closes than made (one counted twice, or an open connection taken for closed): got %+v, want %+v", got, want)
		}
		return got == want, fmt.Sprintf("tcp of pid %d: got %+v, want %+v", pid, got, want)
	})
}

// detachStateChanges takes the TCP probe's state change programs (set_state, set_state_spare) off
// sock:inet_sock_set_state, as the kernel skips them here for some changes (README, "TCP state changes no program
// sees"); the function it returns attaches them again.
func detachStateChanges(t *testing.T, a *Agent) func() {
	t.Helper()
	return detachTCP(t, a, false)
}

// detachTCP is detachStateChanges, and with retransmits the retransmit program too (off tcp:tcp_retransmit_skb).
func detachTCP(t *testing.T, a *Agent, retransmits bool) func() {
	t.Helper()
	progs := []*ebpf.Program{a.sys.tcp.SetState, a.sys.tcp.SetStateSpare} // a.sys.links[:3]'s, in order
	if retransmits {
		progs = append(progs, a.sys.tcp.Retransmit)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.sys.links[:len(progs)] {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		t.Helper()
		a.mu.Lock()
		defer a.mu.Unlock()
		for i, p := range progs {
			l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
			if err != nil {
				t.Fatal(err)
			}
			a.sys.links[i] = l
		}
	}
}

// holdingPeer is a listener of the test's on loopback that holds up to n of the connections it accepts (acceptAll),
// with a client for tg's requests and tg's counts once that client's connection is open, so that it is not in the
// deltas from them.
func holdingPeer(t *testing.T, a *Agent, tg *target, loopback string, n int) (net.Listener, <-chan net.Conn, *http.Client, TCPStats) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		t.Fatal(err)
	}
	accepted := acceptAll(t, ln, n)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	tg.get(t, c, "GET", "/stats")
	return ln, accepted, c, tcpOf(t, a, tg.pid)
}

// acceptAll accepts ln's connections into the channel it returns (of capacity n) until the test ends, when ln and
// the connections left in the channel are closed.
func acceptAll(t *testing.T, ln net.Listener, n int) <-chan net.Conn {
	accepted := make(chan net.Conn, n)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	})
	return accepted
}

// TestTCPClosesNoProgramSawInAnotherNetns: the same for a target in a network namespace of its own, as in a
// container: the agent checks its owners from a thread in that namespace (inNetns). The target dials itself, so each
// connection is one active and one passive of its own; it closes the active ends first.
func TestTCPClosesNoProgramSawInAnotherNetns(t *testing.T) {
	const n = 10
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{}, bin)
	// unshare execs sh, which execs the target: one pid, in a namespace whose loopback sh has brought up.
	cmd := exec.Command("unshare", "-n", "sh", "-c", `ip link set lo up && exec "$0"`, bin)
	cmd.Env = append(os.Environ(), "HTTP_ADDR=127.0.0.1:0")
	tg := startCmd(t, cmd)
	a.Scan()
	// The test's requests are dialled from a thread in the target's namespace.
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := inNetns(tg.pid, 0, func() (err error) {
			conn, err = net.Dial(network, addr)
			return err
		})
		return conn, err
	}}}
	tg.get(t, c, "GET", "/stats")
	base := tcpOf(t, a, tg.pid)
	self := url.QueryEscape(tg.base[len("http://"):])
	exactly := func(want TCPStats) { t.Helper(); tcpExactly(t, a, tg.pid, base, want) }

	tg.get(t, c, "GET", "/dial?hold=1&n="+strconv.Itoa(n)+"&addr="+self)
	for range 5 {
		exactly(TCPStats{Active: n, Passive: n})
	}
	reattach := detachStateChanges(t, a)
	tg.get(t, c, "GET", "/release")
	exactly(TCPStats{Active: n, Passive: n, Closed: 2 * n})

	reattach()
	tg.get(t, c, "GET", "/dial?hold=1&n="+strconv.Itoa(n)+"&addr="+self)
	tg.get(t, c, "GET", "/release")
	for range 5 {
		exactly(TCPStats{Active: 2 * n, Passive: 2 * n, Closed: 4 * n})
	}
}

// TestTCPOpenConnectionsAreNotTakenForClosed: a live connection whose addresses as sock_diag reports them differ
// from those its owner was given at the open is not counted closed by the reconciliation (system.check): a passive
// connection over IPv4 on a dual-stack listener (an IPv6 socket with v4-mapped addresses), and an active one bound
// to a device after its connect (SO_BINDTODEVICE: sock_diag reports the device the socket has now).
func TestTCPOpenConnectionsAreNotTakenForClosed(t *testing.T) {
	const n = 5
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{}, bin)
	tg := startTarget(t, bin, "HTTP_ADDR=:0")
	a.Scan()
	_, port, err := net.SplitHostPort(tg.base[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	ln, accepted, c, base := holdingPeer(t, a, tg, "127.0.0.1", n)
	exactly := func(want TCPStats) { t.Helper(); tcpExactly(t, a, tg.pid, base, want) }

	tg.get(t, c, "GET", "/dial?hold=1&dev=lo&n="+strconv.Itoa(n)+"&addr="+url.QueryEscape(ln.Addr().String()))
	var peers []net.Conn
	for range n {
		peers = append(peers, <-accepted)
	}
	for range n {
		conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, conn)
	}
	for range 5 { // every scrape checks them with sock_diag
		exactly(TCPStats{Active: n, Passive: n})
	}
	tg.get(t, c, "GET", "/release")
	for _, conn := range peers {
		conn.Close()
	}
	exactly(TCPStats{Active: n, Passive: n, Closed: 2 * n})
}

// TestTCPOwnerWithoutAddressesIsNotTakenForClosed: an open owner whose addresses were not read (no network namespace:
// a failed probed read) is not looked for, as it cannot be found among live sockets, and so not counted closed.
func TestTCPOwnerWithoutAddressesIsNotTakenForClosed(t *testing.T) {
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{}, bin)
	tg := startTarget(t, bin)
	a.Scan()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	tg.get(t, c, "GET", "/stats") // the target's tcp entry, made at its accept
	base := tcpOf(t, a, tg.pid)
	var st tcp.BpfTcpStats
	if err := a.sys.tcp.Tcp.Lookup(uint32(tg.pid), &st); err != nil {
		t.Fatal(err)
	}
	const key = uint64(1) // no socket's address
	o := tcp.BpfOwner{Tgid: uint32(tg.pid), Established: openCounted, Start: st.Start, Family: unix.AF_INET}
	if err := a.sys.tcp.Owners.Update(key, &o, ebpf.UpdateNoExist); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := sub(tcpOf(t, a, tg.pid), base); got.Closed != 0 {
			t.Fatalf("an owner without addresses was counted closed: %+v", got)
		}
	}
	var now tcp.BpfOwner
	if err := a.sys.tcp.Owners.Lookup(key, &now); err != nil {
		t.Fatalf("the owner without addresses was deleted: %v", err)
	}
}
