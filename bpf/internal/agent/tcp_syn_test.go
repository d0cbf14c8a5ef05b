package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// TestSYNRetransmitsAreCounted: the SYNs a connecting process retransmits to a peer that drops them are counted for
// it, whether the connect then fails or opens, even when that connect is the first TCP event of the process. The
// retransmit program only added to an existing entry of the process, made at ESTABLISHED or at the failed connect's
// CLOSE, so the SYN retransmits of a process's first connection were not counted at all.
//
// The peer is a loopback listener with a backlog of 0 whose accept queue the test fills: the kernel drops every
// further SYN while the queue is full, so the dialler retransmits its SYN (after 1 s, then 3 s). The dialler is this
// test binary run as a helper process (the agent probes a copy of it): it makes no TCP connection before this one,
// and it reads from its socket's TCP_INFO how many segments the kernel retransmitted, which the agent must count.
func TestSYNRetransmitsAreCounted(t *testing.T) {
	t.Parallel()
	bin, a := probedSelf(t, Config{})
	for _, mode := range []string{"fail", "open"} {
		t.Run(mode, func(t *testing.T) {
			ln := newFullListener(t)
			d := startSYNDialer(t, bin, ln.addr, mode)
			d.await(t, "retransmitted")
			a.Scan()
			want := TCPStats{Failed: 1}
			if mode == "open" {
				ln.acceptOne(t) // room for the next retransmitted SYN: the connection opens
				want = TCPStats{Active: 1}
			}
			n, err := strconv.ParseUint(d.await(t, "total_retrans"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			want.Retransmits = n
			eventually(t, func() (bool, string) {
				got := tcpOf(t, a, d.pid)
				return got == want, fmt.Sprintf("first connect of pid %d, its SYN retransmitted %d times, then %s: got %+v, want %+v",
					d.pid, n, mode, got, want)
			})
		})
	}
}

// TestSYNRetransmitsWithNoRoomAreDropped: a connecting process that finds no room in the TCP probe's map (one entry
// here, held by this test process) gets no series, and its SYN retransmits and failed connect are counted in
// shanhai_bpf_tcp_series_dropped_total, not lost silently. The map is the whole machine's, so other processes' events
// are among the drops too: the dialler's must be at least there.
func TestSYNRetransmitsWithNoRoomAreDropped(t *testing.T) {
	t.Parallel()
	bin, a := probedSelf(t, Config{processEntries: 1})
	fillTCPMap(t, a)
	ln := newFullListener(t)
	before, err := a.TCPSeriesDropped()
	if err != nil {
		t.Fatal(err)
	}
	d := startSYNDialer(t, bin, ln.addr, "fail")
	d.await(t, "retransmitted")
	a.Scan()
	n, err := strconv.ParseUint(d.await(t, "total_retrans"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() (bool, string) {
		after, err := a.TCPSeriesDropped()
		if err != nil {
			t.Fatal(err)
		}
		got := tcpOf(t, a, d.pid)
		return got == TCPStats{} && after-before >= n+1, fmt.Sprintf("pid %d with no room, its SYN retransmitted %d times, then failed: "+
			"counted %+v, want nothing; %d dropped, want at least %d", d.pid, n, got, after-before, n+1)
	})
}

// fillTCPMap makes this test process the only one in the agent's one-entry tcp map (processEntries 1), so that no
// other process finds room. The agent never deletes it (the process is alive), nor does the kernel (it deletes an
// exiting process's entry).
func fillTCPMap(t *testing.T, a *Agent) {
	t.Helper()
	own := uint32(os.Getpid())
	m := a.sys.tcp.Tcp
	eventually(t, func() (bool, string) {
		var k uint32
		var others []uint32
		for it := m.Iterate(); it.Next(&k, new(tcp.BpfTcpStats)); {
			if k != own {
				others = append(others, k)
			}
		}
		for _, k := range others {
			m.Delete(k)
		}
		// Another process may take the room freed above first: then this fails, and the next round deletes it.
		err := m.Update(own, new(tcp.BpfTcpStats), ebpf.UpdateAny)
		return err == nil, fmt.Sprintf("tcp map not filled with pid %d: %v", own, err)
	})
}

// synDialerEnv names the address the helper process dials; synModeEnv says whether it gives up (closes the socket)
// after its first SYN retransmit ("fail") or waits for the connection to open ("open").
const (
	synDialerEnv = "SHANHAI_TEST_SYN_DIAL"
	synModeEnv   = "SHANHAI_TEST_SYN_MODE"
)

// TestSYNDialerProcess is not a test: it is the dialler of TestSYNRetransmitsAreCounted when run by it with
// synDialerEnv set, and does nothing otherwise. It prints "retransmitted" once the kernel has retransmitted its SYN,
// then "total_retrans N" (the socket's own count of retransmitted segments) once the connect has failed or opened,
// and exits when its standard input closes, so that the agent can be read while the process is alive.
func TestSYNDialerProcess(t *testing.T) {
	addr := os.Getenv(synDialerEnv)
	if addr == "" {
		return
	}
	if err := dialSYN(addr, os.Getenv(synModeEnv) == "open", os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "syn dialler:", err)
		os.Exit(1)
	}
	io.Copy(io.Discard, os.Stdin)
}

// dialSYN connects to addr with a non-blocking socket, so that the socket's TCP_INFO can be read while the SYN is
// retransmitted, and reports as TestSYNDialerProcess says.
func dialSYN(addr string, open bool, out io.Writer) error {
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	sa := &syscall.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	if err := syscall.Connect(fd, sa); err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return fmt.Errorf("connect to %s: %v, want it in progress", addr, err)
	}
	info, err := pollTCPInfo(fd, func(i *syscall.TCPInfo) bool { return i.Total_retrans >= 1 })
	if err != nil {
		syscall.Close(fd)
		return fmt.Errorf("waiting for a SYN retransmit: %w", err)
	}
	fmt.Fprintln(out, "retransmitted")
	if open {
		if info, err = pollTCPInfo(fd, func(i *syscall.TCPInfo) bool { return i.State == tcpEstablished }); err != nil {
			syscall.Close(fd)
			return fmt.Errorf("waiting for the connection to open: %w", err)
		}
		// The socket stays open until the process exits: only the open and the SYN retransmits are counted.
		fmt.Fprintln(out, "total_retrans", info.Total_retrans)
		return nil
	}
	// Closing a socket in SYN_SENT fails the connect (CLOSE). The next retransmit is due 2 s after the first, so
	// none comes between the read above and this close.
	if err := syscall.Close(fd); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if info.State != tcpSynSent {
		return fmt.Errorf("socket in state %d when closed, want SYN_SENT", info.State)
	}
	fmt.Fprintln(out, "total_retrans", info.Total_retrans)
	return nil
}

// TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
)

// pollTCPInfo reads fd's TCP_INFO every 10 ms until done holds, for up to 20 s.
func pollTCPInfo(fd int, done func(*syscall.TCPInfo) bool) (*syscall.TCPInfo, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := tcpInfo(fd)
		if err != nil {
			return nil, err
		}
		if done(info) {
			return info, nil
		}
		if time.Now().After(deadline) {
			return info, fmt.Errorf("not there after 20 s: state %d, %d retransmitted", info.State, info.Total_retrans)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tcpInfo(fd int) (*syscall.TCPInfo, error) {
	var info syscall.TCPInfo
	size := uint32(unsafe.Sizeof(info))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("getsockopt TCP_INFO: %w", errno)
	}
	return &info, nil
}

// helperProcess is this test binary run as a probed helper process (TestSYNDialerProcess, TestLossyStreamsProcess)
// that reports on its standard output and exits when its standard input closes.
type helperProcess struct {
	pid int
	out *bufio.Reader
}

func startSYNDialer(t *testing.T, bin, addr, mode string) *helperProcess {
	t.Helper()
	return startSYNDialerIn(t, "", bin, addr, mode)
}

// startSYNDialerIn is startSYNDialer in the network namespace at path netns (startHelperIn).
func startSYNDialerIn(t *testing.T, netns, bin, addr, mode string) *helperProcess {
	t.Helper()
	return startHelperIn(t, netns, bin, "TestSYNDialerProcess", synDialerEnv+"="+addr, synModeEnv+"="+mode)
}

// probedSelf returns a copy of this test binary of the test's own, to run its helper processes from (startHelper),
// and an agent with cfg's settings probing that copy alone: the agent counts only the processes the test starts,
// not those other tests start from the shared binary. It fails the test, or skips it as requireRoot says, when
// not run as root.
func probedSelf(t *testing.T, cfg Config) (bin string, a *Agent) {
	t.Helper()
	requireRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin = ownCopy(t, exe)
	return bin, newAgentWith(t, cfg, bin)
}

// startHelper runs bin (a copy of this test binary) as the helper process of test helper, with env added to the
// environment; it is killed when the test ends.
func startHelper(t *testing.T, bin, helper string, env ...string) *helperProcess {
	t.Helper()
	return startHelperIn(t, "", bin, helper, env...)
}

// startHelperIn is startHelper in the network namespace at path netns (none: this process's), entered by nsenter,
// which execs the helper: the helper has its pid.
func startHelperIn(t *testing.T, netns, bin, helper string, env ...string) *helperProcess {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^"+helper+"$", "-test.count=1")
	if netns != "" {
		cmd = exec.Command("nsenter", append([]string{"--net=" + netns, bin}, cmd.Args[1:]...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &helperProcess{pid: cmd.Process.Pid, out: bufio.NewReader(out)}
}

// await reads the helper's next line, which must start with word, and returns the rest of it.
func (d *helperProcess) await(t *testing.T, word string) string {
	t.Helper()
	line, err := d.out.ReadString('\n')
	if err != nil {
		t.Fatalf("helper process (pid %d) ended before %q: %v", d.pid, word, err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), word)
	if !ok {
		t.Fatalf("helper process (pid %d) printed %q, want %q first", d.pid, line, word)
	}
	return strings.TrimSpace(rest)
}

// fullListener is a loopback TCP listener with a backlog of 0 whose accept queue holds one connection, the test's
// own: the kernel drops the SYNs of any other connect to it until that one is accepted.
type fullListener struct {
	fd   int
	addr string
	sa   *syscall.SockaddrInet4 // addr, for syscall.Connect
}

func newFullListener(t *testing.T) *fullListener {
	t.Helper()
	fd, sa := listenLoopback(t, 0)
	l := &fullListener{fd: fd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.Port)), sa: sa}
	c, err := net.Dial("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The dial returns when the client side is established; the connection is queued when the server side
	// processes the last ACK. A listener's TCP_INFO gives its accept queue's length in tcpi_unacked.
	eventually(t, func() (bool, string) {
		info, err := tcpInfo(fd)
		if err != nil {
			t.Fatal(err)
		}
		return info.Unacked == 1, fmt.Sprintf("listener's accept queue holds %d connections, want 1", info.Unacked)
	})
	return l
}

// acceptOne takes the queued connection (and closes it), making room for one more.
func (l *fullListener) acceptOne(t *testing.T) {
	t.Helper()
	syscall.Close(acceptFD(t, l.fd))
}
