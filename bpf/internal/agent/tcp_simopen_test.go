package agent

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
)

// TestSimultaneousOpenIsAnOpen: a connect that opens by a simultaneous open (both ends send a SYN: two peers
// punching through NATs, or a socket connecting to its own address, which Linux allows) passes SYN_SENT, SYN_RECV,
// ESTABLISHED. connect() succeeds, so it is an active open, and its close a close; the probe counted an open only
// from SYN_SENT straight to ESTABLISHED, so it counted no open and, at the close, a failed connect.
func TestSimultaneousOpenIsAnOpen(t *testing.T) {
	bin, a := probedSelf(t, Config{})
	d := startHelper(t, bin, "TestSelfConnectProcess", selfConnectEnv+"=1")
	a.Scan()
	d.await(t, "closed")
	want := TCPStats{Active: 1, Closed: 1}
	eventually(t, func() (bool, string) {
		got := tcpOf(t, a, d.pid)
		return got == want, fmt.Sprintf("pid %d, one connect of a socket to itself, then closed: got %+v, want %+v", d.pid, got, want)
	})
}

// selfConnectEnv makes TestSelfConnectProcess connect.
const selfConnectEnv = "SHANHAI_TEST_SELF_CONNECT"

// TestSelfConnectProcess is not a test: it is the helper of TestSimultaneousOpenIsAnOpen when run by it with
// selfConnectEnv set, and does nothing otherwise. It connects a loopback socket to its own address (a simultaneous
// open), checks that the connection is established, resets it, prints "closed" and waits for its standard input to
// close.
func TestSelfConnectProcess(t *testing.T) {
	if os.Getenv(selfConnectEnv) == "" {
		return
	}
	if err := selfConnect(); err != nil {
		fmt.Fprintln(os.Stderr, "self connect:", err)
		os.Exit(1)
	}
	fmt.Println("closed")
	io.Copy(io.Discard, os.Stdin)
}

func selfConnect() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	self, err := syscall.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	if err := syscall.Connect(fd, self); err != nil {
		return fmt.Errorf("connect to itself: %w", err)
	}
	info, err := tcpInfo(fd)
	if err != nil {
		return err
	}
	if info.State != tcpEstablished {
		return fmt.Errorf("state %d after connect, want ESTABLISHED", info.State)
	}
	if err := syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0}); err != nil {
		return fmt.Errorf("SO_LINGER: %w", err)
	}
	return nil
}
