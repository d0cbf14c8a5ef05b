package agent

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTCPLifecycle: connections the target opens (connect) and accepts are counted exactly for its pid, and every
// one of them is counted again when it closes. Accepts are seen by a uprobe on the target's binary, so a stripped
// target is run too.
func TestTCPLifecycle(t *testing.T) {
	t.Parallel()
	for _, stripped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stripped=%v", stripped), func(t *testing.T) { testTCPLifecycle(t, Config{}, stripped, "127.0.0.1") })
	}
}

// TestTCPLifecycleIPv6: the connections of a target serving and dialling over IPv6 are counted as over IPv4:
// accepted_sock takes AF_INET6 TCP sockets too.
func TestTCPLifecycleIPv6(t *testing.T) {
	t.Parallel()
	testTCPLifecycle(t, Config{}, false, "::1")
}

// testTCPLifecycle runs the target serving on loopback, dialling a listener there, with an agent of cfg's settings.
func testTCPLifecycle(t *testing.T, cfg Config, stripped bool, loopback string) {
	requireRoot(t)
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			t.Fatalf("listen on %s: %v", loopback, err)
		}
		return ln
	}
	bin := ownCopy(t, buildTarget(t, stripped))
	a := newAgentWith(t, cfg, bin)
	tg := startTarget(t, bin, "HTTP_ADDR="+net.JoinHostPort(loopback, "0"))
	a.Scan()

	// A listener in the test process for the target to dial; it accepts and closes.
	ln := listen()
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// One keep-alive connection drives the target; opened before the baseline so it is not in the deltas.
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	tg.get(t, c, "GET", "/stats")
	base := tcpOf(t, a, tg.pid)

	const dials, accepts = 20, 15
	tg.get(t, c, "GET", "/dial?n="+strconv.Itoa(dials)+"&addr="+url.QueryEscape(ln.Addr().String()))
	for range accepts {
		conn, err := net.Dial("tcp", tg.base[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	want := TCPStats{Active: dials, Passive: accepts, Closed: dials + accepts}
	eventually(t, func() (bool, string) {
		got := sub(tcpOf(t, a, tg.pid), base)
		got.Retransmits = 0 // loopback does not retransmit, but it is not what this test is about
		return got == want, fmt.Sprintf("tcp over %s for pid %d: got %+v, want %+v (closes the agent counted unseen: %d)",
			loopback, tg.pid, got, want, unseenClosed(a, tg.pid))
	})

	// A refused connect is a failure, not an open.
	base = tcpOf(t, a, tg.pid)
	tg.get(t, c, "GET", "/dial?n=1&addr="+url.QueryEscape(refusingAddr(t, loopback)))
	eventually(t, func() (bool, string) {
		got := sub(tcpOf(t, a, tg.pid), base)
		return got == TCPStats{Failed: 1}, fmt.Sprintf("refused connect: got %+v, want one failure", got)
	})
}

// refusingAddr is an address on loopback that refuses connections for the rest of the test: a port bound and never
// listened on. A listener closed to free its port did not do: a child that another parallel test was forking
// (exec.Command) held the listener's fd until its exec, so the connect could be accepted (Active 1, not Failed 1).
// Bound, the port cannot be taken by a listener of another test either.
func refusingAddr(t *testing.T, loopback string) string {
	t.Helper()
	ip := net.ParseIP(loopback)
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Addr: [16]byte(ip.To16())})
	if ip4 := ip.To4(); ip4 != nil {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte(ip4)}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket for a refusing address: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatalf("bind a refusing address on %s: %v", loopback, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("read the refusing address: %v", err)
	}
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		return net.JoinHostPort(loopback, strconv.Itoa(b.Port))
	case *unix.SockaddrInet6:
		return net.JoinHostPort(loopback, strconv.Itoa(b.Port))
	}
	t.Fatalf("refusing address: unexpected %T", bound)
	return ""
}

func tcpOf(t *testing.T, a *Agent, pid int) TCPStats {
	t.Helper()
	s, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s.TCP[pid]
}

func sub(a, b TCPStats) TCPStats {
	return TCPStats{a.Active - b.Active, a.Passive - b.Passive, a.Closed - b.Closed, a.Failed - b.Failed, a.Retransmits - b.Retransmits}
}

// unseenClosed is how many of pid's closes the agent counted itself, as gone from sock_diag (system.reconcile), rather
// than the programs: a failure names which side counted a close too many.
func unseenClosed(a *Agent, pid int) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sys.unseen[uint32(pid)].closed
}
