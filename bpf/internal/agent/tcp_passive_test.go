package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPassiveOnlyProcessIsCounted: a process that only accepts (no connect, so no SYN_SENT makes its entry) has its
// opens, closes and the segments its accepted sockets retransmit counted: the entry and the sockets' owners are made
// by accept_ret, in the accepting process, with the sockets' retransmit counts as they were at the accept.
func TestPassiveOnlyProcessIsCounted(t *testing.T) {
	bin, a := probedSelf(t, Config{})
	const conns = 4
	d := startHelper(t, bin, "TestLossyServerProcess", lossyServerEnv+"="+strconv.Itoa(conns))
	a.Scan()
	addr := d.await(t, "addr")
	var cs []*net.TCPConn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range conns {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c.(*net.TCPConn))
		if err := dropSome(c.(*net.TCPConn), true); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { _, errs[i] = io.ReadFull(c, make([]byte, lossyServerBytes)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if err := dropSome(c, false); err != nil {
			t.Fatal(err)
		}
	}
	n, err := strconv.ParseUint(d.await(t, "total_retrans"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the server's lossy streams retransmitted nothing")
	}
	want := TCPStats{Passive: conns, Closed: conns, Retransmits: n}
	eventually(t, func() (bool, string) {
		got := tcpOf(t, a, d.pid)
		return got == want, fmt.Sprintf("accepting-only pid %d: got %+v, want %+v", d.pid, got, want)
	})
}

// lossyServerEnv makes TestLossyServerProcess accept that many connections; lossyServerBytes is what it sends on each.
const (
	lossyServerEnv   = "SHANHAI_TEST_LOSSY_SERVER"
	lossyServerBytes = 2 << 20
)

// TestLossyServerProcess is not a test: it is the helper of TestPassiveOnlyProcessIsCounted when run by it with
// lossyServerEnv set, and does nothing otherwise. It listens on loopback (MSS 1400), prints "addr A", accepts the
// connections, sends lossyServerBytes on each, waits until every byte is acknowledged, resets them and prints
// "total_retrans N" (what they retransmitted), then waits for its standard input to close.
func TestLossyServerProcess(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(lossyServerEnv))
	if n == 0 {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "lossy server:", err)
		os.Exit(1)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1400) }); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	fmt.Println("addr", ln.Addr())
	var cs []*net.TCPConn
	for range n {
		c, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		cs = append(cs, c.(*net.TCPConn))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { _, errs[i] = c.Write(make([]byte, lossyServerBytes)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fail(err)
	}
	var total uint64
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range cs {
		// Until every byte is acknowledged: the send queue (SIOCOUTQ), not the segments in flight (tcpi_unacked),
		// which are none too while the client's window is shut with bytes still unsent; the reset below then cut
		// the client's read short ("connection reset by peer", seen once in a -count 3 run).
		for {
			queued, err := sendQueue(c)
			if err != nil {
				fail(err)
			}
			if queued == 0 {
				break
			}
			if time.Now().After(deadline) {
				fail(fmt.Errorf("%d bytes still unacknowledged after 20 s", queued))
			}
			time.Sleep(10 * time.Millisecond)
		}
		info, err := connTCPInfo(c)
		if err != nil {
			fail(err)
		}
		total += uint64(info.Total_retrans)
		if err := c.SetLinger(0); err != nil {
			fail(err)
		}
		c.Close()
	}
	fmt.Println("total_retrans", total)
	io.Copy(io.Discard, os.Stdin)
}

// sendQueue is the number of bytes written to c that its peer has not acknowledged yet, sent or not (SIOCOUTQ).
func sendQueue(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return 0, err
	}
	if ierr != nil {
		return 0, fmt.Errorf("ioctl SIOCOUTQ: %w", ierr)
	}
	return n, nil
}
