package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// TestTCPEventsOfAnExitedOwnerAreNotTheNextProcesses: a connection outlives the process that opened it (its socket
// went to another process: SCM_RIGHTS, an inherited fd; here pidfd_getfd into this test process), and a new process
// gets the exited one's pid. The connection's later events (its close here; its retransmits alike) were charged to
// the remembered owner's pid, and so to the new process, which never had that connection: the probe checked only
// that the pid had an entry in tcp, and the new process makes one with its own first connection.
func TestTCPEventsOfAnExitedOwnerAreNotTheNextProcesses(t *testing.T) {
	bin, a := probedSelf(t, Config{})

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acceptAll(t, ln, 4) // the holders' connections stay open until the test ends

	old := startHolder(t, bin, ln.Addr().String(), 0)
	a.Scan()
	oldFD, err := strconv.Atoi(old.await(t, "fd"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() (bool, string) {
		got := tcpOf(t, a, old.pid)
		return got == TCPStats{Active: 1}, fmt.Sprintf("first process (pid %d): got %+v, want one active open", old.pid, got)
	})
	sock := takeFD(t, old.pid, oldFD)
	defer func() {
		if sock >= 0 {
			syscall.Close(sock)
		}
	}()
	pid := old.pid
	old.stop(t) // its tcp entry goes with it; the socket lives on in this process
	a.Scan()    // the agent forgets the exited pid now, not after the new process has counted under it

	next := startHolderAt(t, bin, ln.Addr().String(), pid)
	a.Scan()
	next.await(t, "fd")
	eventually(t, func() (bool, string) {
		got := tcpOf(t, a, pid)
		return got == TCPStats{Active: 1}, fmt.Sprintf("new process at pid %d: got %+v, want its own active open", pid, got)
	})

	// A close with a zero linger time resets the connection: the socket passes CLOSE within this close(2).
	if err := syscall.SetsockoptLinger(sock, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Close(sock); err != nil {
		t.Fatal(err)
	}
	sock = -1
	if got := tcpOf(t, a, pid); got != (TCPStats{Active: 1}) {
		t.Errorf("new process at pid %d: got %+v, want only its own active open (the exited process's connection closed)", pid, got)
	}
}

// holderEnv names the address TestTCPHolderProcess dials.
const holderEnv = "SHANHAI_TEST_TCP_HOLD"

// TestTCPHolderProcess is not a test: it is the helper of TestTCPEventsOfAnExitedOwnerAreNotTheNextProcesses when
// run by it with holderEnv set, and does nothing otherwise. It dials that address once, prints "fd N" (its socket's
// file descriptor) and holds the connection until its standard input closes.
func TestTCPHolderProcess(t *testing.T) {
	addr := os.Getenv(holderEnv)
	if addr == "" {
		return
	}
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(1)
	}
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(1)
	}
	raw.Control(func(fd uintptr) { fmt.Println("fd", fd) })
	io.Copy(io.Discard, os.Stdin)
	c.Close()
}

// holder is a running TestTCPHolderProcess.
type holder struct {
	helperProcess
	cmd *exec.Cmd
	in  io.Closer
}

// startHolder runs bin as TestTCPHolderProcess dialling addr, with pid if pid is not 0 (ns_last_pid is set just
// below it: it must be free, and another process on the machine may take it first, so it is tried a few times).
func startHolder(t *testing.T, bin, addr string, pid int) *holder {
	t.Helper()
	if pid != 0 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Fatalf("force pid %d: %v", pid, err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^TestTCPHolderProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), holderEnv+"="+addr)
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
	h := &holder{helperProcess: helperProcess{pid: cmd.Process.Pid, out: bufio.NewReader(out)}, cmd: cmd, in: in}
	t.Cleanup(func() { h.stop(t) })
	return h
}

func startHolderAt(t *testing.T, bin, addr string, pid int) *holder {
	t.Helper()
	for range 20 {
		h := startHolder(t, bin, addr, pid)
		if h.pid == pid {
			return h
		}
		h.stop(t)
	}
	t.Fatalf("no process started with pid %d in 20 tries", pid)
	return nil
}

// stop ends the holder and waits for it: its exit has been handled by the probes when stop returns.
func (h *holder) stop(t *testing.T) {
	if h.cmd.ProcessState != nil {
		return
	}
	h.in.Close()
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

// takeFD duplicates file descriptor fd of process pid into this process (pidfd_open and pidfd_getfd, Linux 5.6; the
// same syscall numbers on amd64 and arm64).
func takeFD(t *testing.T, pid, fd int) int {
	t.Helper()
	const sysPidfdOpen, sysPidfdGetfd = 434, 438
	pidfd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		t.Fatalf("pidfd_open %d: %v", pid, errno)
	}
	defer syscall.Close(int(pidfd))
	nfd, _, errno := syscall.Syscall(sysPidfdGetfd, pidfd, uintptr(fd), 0)
	if errno != 0 {
		t.Fatalf("pidfd_getfd %d of pid %d: %v", fd, pid, errno)
	}
	return int(nfd)
}
