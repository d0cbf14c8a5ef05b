package agent

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkRecountPass prices one pass of tcp.c's recount, what each scrape pays per network namespace with owners
// (system.reconcile): netns=agent runs it where the sockets are, locking and looking up each of them; netns=empty runs
// it in a namespace of no sockets, where it only walks the kernel's TCP hash tables past the other namespaces'
// (one table for all unless net.ipv4.tcp_child_ehash_entries is set), as it does in each pod's namespace on a node.
// conns loopback connections (two sockets each) are held open in the agent's namespace meanwhile; the TCP sockets in
// use and in time-wait there are reported (sockstat) beside the time.
//
//	go test -run '^$' -bench RecountPass ./internal/agent
func BenchmarkRecountPass(b *testing.B) {
	if !isRoot() {
		b.Skip("needs root")
	}
	s, err := attachSystem(0, 0, false)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if s.recount == nil {
		b.Skipf("no tcp socket iterator: %s", s.recountOff)
	}
	for _, conns := range []int{0, 5000} {
		closeAll := holdConns(b, conns)
		inuse, tw := tcpSockstat(b)
		for _, ns := range []string{"agent", "empty"} {
			b.Run(fmt.Sprintf("conns=%d/netns=%s", conns, ns), func(b *testing.B) {
				if ns == "empty" {
					// Moved back after, as inNetns does: the runtime would wedge the main thread there for good.
					runtime.LockOSThread()
					back, err := os.Open("/proc/thread-self/ns/net")
					if err != nil {
						b.Fatal(err)
					}
					defer back.Close()
					if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
						b.Fatal(err)
					}
					defer func() {
						if err := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); err != nil {
							b.Fatal(err)
						}
						runtime.UnlockOSThread()
					}()
				}
				for b.Loop() {
					if err := s.recountHere(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(inuse), "tcp-inuse")
				b.ReportMetric(float64(tw), "tcp-timewait")
			})
		}
		closeAll()
	}
}

// holdConns opens n loopback connections from this process (2n sockets, n of them connecting) and returns what
// closes them.
func holdConns(tb testing.TB, n int) func() {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	accepted := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, c, <-accepted)
	}
	return func() {
		ln.Close()
		for _, c := range conns {
			c.Close()
		}
	}
}

// tcpSockstat is the agent's namespace's TCP sockets in use and in time-wait (/proc/net/sockstat).
func tcpSockstat(b *testing.B) (inuse, tw int) {
	b.Helper()
	data, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != "TCP:" {
			continue
		}
		inuse, _ = strconv.Atoi(f[2])
		tw, _ = strconv.Atoi(f[6])
	}
	return inuse, tw
}
