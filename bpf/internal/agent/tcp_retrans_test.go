package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestRetransmittedSegmentsAreCounted: shanhai_bpf_tcp_retransmits_total counts the segments the kernel
// retransmitted on the process's connections, as the sockets' own counters (TCP_INFO's tcpi_total_retrans, the
// RetransSegs of /proc/net/snmp) do. The helper process (this test binary, probed) streams over loopback connections
// to itself whose receiving sockets drop a share of the packets that reach them (a socket filter), so the senders
// retransmit, by timeout and fast retransmit, in softirq and in the sender's own context; the loss ends, every byte
// is acknowledged, and the helper sums its sockets' counts and resets them. The count is compared once they are
// closed: while one was open, the probe had counted one segment less than its socket in about one run in 25 (with no
// recursion miss; the close counts what the retransmit program did not see).
func TestRetransmittedSegmentsAreCounted(t *testing.T) {
	t.Parallel()
	bin, a := probedSelf(t, Config{})
	d := startHelper(t, bin, "TestLossyStreamsProcess", lossyEnv+"=1")
	a.Scan()
	n, err := strconv.ParseUint(d.await(t, "total_retrans"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the lossy streams retransmitted nothing")
	}
	defer func() {
		if st, err := a.sys.tcp.Retransmit.Stats(); err == nil {
			t.Logf("retransmit: %d runs, %d recursion misses", st.RunCount, st.RecursionMisses)
		}
	}()
	each := d.await(t, "sockets")
	eventually(t, func() (bool, string) {
		got := tcpOf(t, a, d.pid).Retransmits
		return got == n, fmt.Sprintf("pid %d: %d retransmits counted, its sockets retransmitted %d segments (each socket %s)",
			d.pid, got, n, each)
	})
}

// lossyEnv makes TestLossyStreamsProcess stream.
const lossyEnv = "SHANHAI_TEST_LOSSY_STREAMS"

// TestLossyStreamsProcess is not a test: it is the helper of TestRetransmittedSegmentsAreCounted when run by it with
// lossyEnv set, and does nothing otherwise. It prints "total_retrans N", the segments its sockets retransmitted, and
// "sockets [...]", each one's, once it has reset them all, then waits for its standard input to close.
func TestLossyStreamsProcess(t *testing.T) {
	if os.Getenv(lossyEnv) == "" {
		return
	}
	conns, err := lossyStreams(8, 4<<20)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lossy streams:", err)
		os.Exit(1)
	}
	var total uint64
	var each []uint32
	for _, c := range conns {
		info, err := connTCPInfo(c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lossy streams:", err)
			os.Exit(1)
		}
		total += uint64(info.Total_retrans)
		each = append(each, info.Total_retrans)
		// A reset: the socket reaches CLOSE now, with nothing more to retransmit (no FIN).
		if err := c.SetLinger(0); err != nil {
			fmt.Fprintln(os.Stderr, "lossy streams:", err)
			os.Exit(1)
		}
		c.Close()
	}
	slices.Sort(each)
	fmt.Println("total_retrans", total)
	fmt.Println("sockets", each)
	io.Copy(io.Discard, os.Stdin)
}

// lossyStreams opens n connections to itself over loopback and sends size bytes on each at once while the receiving
// sockets drop about one packet in twenty. The small MSS gives many segments in flight, so that losses are found by
// duplicate acknowledgements as well as by timeouts. It returns every socket (both ends) once the loss has ended and
// each sender has had all its bytes acknowledged: none retransmits any more.
func lossyStreams(n, size int) ([]*net.TCPConn, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1400) }); err != nil {
			return err
		}
		return serr
	}}
	var senders, receivers []*net.TCPConn
	for range n {
		c, err := dialer.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		r, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		senders, receivers = append(senders, c.(*net.TCPConn)), append(receivers, r.(*net.TCPConn))
		if err := dropSome(receivers[len(receivers)-1], true); err != nil {
			return nil, err
		}
	}
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = senders[i].Write(make([]byte, size))
		})
		wg.Go(func() {
			_, errs[n+i] = io.ReadFull(receivers[i], make([]byte, size))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, r := range receivers {
		if err := dropSome(r, false); err != nil {
			return nil, err
		}
	}
	// Every byte was received; the last acknowledgements may still be on their way.
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range senders {
		for {
			info, err := connTCPInfo(c)
			if err != nil {
				return nil, err
			}
			if info.Unacked == 0 {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%d segments still unacknowledged after 20 s", info.Unacked)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return append(senders, receivers...), nil
}

// dropSome attaches (on) or detaches a classic socket filter that drops about one in twenty of the packets that
// reach c (ld rand; accept if it is at least 2^32/20).
func dropSome(c *net.TCPConn, on bool) error {
	const adRandom = 0xfffff000 + 56 // SKF_AD_OFF + SKF_AD_RANDOM
	prog := []syscall.SockFilter{
		{Code: syscall.BPF_LD | syscall.BPF_W | syscall.BPF_ABS, K: adRandom},
		{Code: syscall.BPF_JMP | syscall.BPF_JGE | syscall.BPF_K, K: 1 << 32 / 20, Jt: 0, Jf: 1},
		{Code: syscall.BPF_RET | syscall.BPF_K, K: 0xffffffff},
		{Code: syscall.BPF_RET | syscall.BPF_K, K: 0},
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if !on {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DETACH_FILTER, 0)
			return
		}
		fprog := syscall.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		_, _, errno := syscall.Syscall6(syscall.SYS_SETSOCKOPT, fd, syscall.SOL_SOCKET, syscall.SO_ATTACH_FILTER,
			uintptr(unsafe.Pointer(&fprog)), unsafe.Sizeof(fprog), 0)
		if errno != 0 {
			serr = fmt.Errorf("SO_ATTACH_FILTER: %w", errno)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

func connTCPInfo(c *net.TCPConn) (*syscall.TCPInfo, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var info *syscall.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = tcpInfo(int(fd)) }); err != nil {
		return nil, err
	}
	return info, ierr
}
