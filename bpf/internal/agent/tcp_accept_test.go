package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// TestUnixAcceptIsNotTCP: internal/poll.(*FD).Accept, where passive opens are counted, serves Unix-socket listeners
// too. Their connections are no TCP opens, and an owner entry for them would never be deleted (no TCP state change
// closes it) and would take the place of a real socket in the shared owners table.
func TestUnixAcceptIsNotTCP(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := build(t, "testdata/unixaccept", "unixaccept", false)
	a := newAgent(t, bin)
	a.Scan()
	sock := filepath.Join(t.TempDir(), "s")
	cmd, _, _ := startProgram(t, bin, sock)
	a.Scan()
	const conns = 10
	for range conns {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		// The server closes first: reading its EOF proves this connection went through Accept.
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("unixaccept wrote to the connection")
		}
		c.Close()
	}
	if got := tcpOf(t, a, cmd.Process.Pid); got != (TCPStats{}) {
		t.Fatalf("%d Unix-socket accepts counted as TCP: %+v, want nothing", conns, got)
	}
	if n := ownersOf(t, a, cmd.Process.Pid); n != 0 {
		t.Fatalf("%d Unix-socket accepts left %d entries in the owners table, want none", conns, n)
	}
}

// TestResetBeforeAcceptIsClosed: a connection the client resets while it waits in the accept queue has reached
// TCP_CLOSE when the target accepts it. It is counted opened and closed; it was counted opened only (no later state
// change would ever charge it), and its owner entry stayed in the table.
func TestResetBeforeAcceptIsClosed(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := build(t, "testdata/lateaccept", "lateaccept", false)
	a := newAgent(t, bin)
	a.Scan()
	cmd, addr, in := startProgram(t, bin)
	a.Scan()
	const resets = 5
	for range resets {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetLinger(0) // Close sends a RST
		c.Close()
	}
	// Loopback delivers the RSTs before Close returns: the queued connections are closed before any accept.
	if _, err := fmt.Fprintln(in, "accept"); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	eventually(t, func() (bool, string) {
		got := tcpOf(t, a, pid)
		got.Retransmits = 0
		want := TCPStats{Passive: resets, Closed: resets}
		return got == want, fmt.Sprintf("%d connections reset before accept: got %+v, want %+v", resets, got, want)
	})
	if n := ownersOf(t, a, pid); n != 0 {
		t.Fatalf("%d connections reset before accept left %d entries in the owners table, want none", resets, n)
	}
}

// ownersOf counts the owners-table entries that charge pid.
func ownersOf(t *testing.T, a *Agent, pid int) int {
	t.Helper()
	var key uint64
	var o tcp.BpfOwner
	n := 0
	it := a.sys.tcp.Owners.Iterate()
	for it.Next(&key, &o) {
		if int(o.Tgid) == pid {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// startProgram runs a test program, killed when the test ends, and returns it with the first line it prints (it
// prints one when it is ready) and its standard input.
func startProgram(t *testing.T, bin string, args ...string) (*exec.Cmd, string, io.Writer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
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
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("%s printed no first line: %v", filepath.Base(bin), err)
	}
	return cmd, strings.TrimSpace(line), in
}
