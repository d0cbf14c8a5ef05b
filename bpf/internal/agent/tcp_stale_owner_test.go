package agent

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// TestTCPStaleOwnerIsNotAnUntrackedSockets: a socket of a process the probe does not track that gets the memory of a
// freed target socket whose close no program saw (its owner left connecting, as a missed close leaves it) is not
// taken for that socket: neither its open nor anything else of it is counted to the owner's process, and the owner is
// gone. Found by review of recount: the programs and recount look owners up by the socket's address, and recount's
// address check cannot tell a connect to the same address and port apart, so such a socket's open was counted to the
// stale owner's process (Active:1, want 0, before tcp.c forgot the owner at the socket's first change). "connect": the
// socket dials the stale owner's address; "accept": the socket is a listener's new child; "listen": the socket is a
// listener, whose close counted the stale owner's connect failed (Failed:1, want 0, before tcp.c forgot it at
// CLOSE -> LISTEN too; found by review of c591911e).
//
// The test process plays both: tracked for one connect (its inode put in tracked_files), whose owner is put back
// after its close as if that close were unseen, then untracked; the kernel hands the freed memory to the next socket
// made on the same CPU (its slab's free list), which /proc/net/tcp's socket pointers (hashed, equal for one
// address) confirm. When another socket took the memory first, the attempt is made again.
func TestTCPStaleOwnerIsNotAnUntrackedSockets(t *testing.T) {
	for _, next := range []staleNext{staleConnect, staleAccept, staleListen} {
		t.Run(string(next), func(t *testing.T) { testStaleOwner(t, next) })
	}
}

// staleNext is what the untracked socket that gets a stale owner's memory does first.
type staleNext string

const (
	staleConnect staleNext = "connect"
	staleAccept  staleNext = "accept"
	staleListen  staleNext = "listen"
)

func testStaleOwner(t *testing.T, next staleNext) {
	passive := next == staleAccept
	_, a := probedSelf(t, Config{})
	ln := newFullListener(t)              // a connect to it stays connecting
	ln2, ln2Addr := listenLoopback(t, 16) // a plain one, for the passive case's child
	self, pid := selfInode(t), os.Getpid()

	defer onCPU0(t)()

	var (
		key   uint64
		sock  int // the untracked socket that got the stale owner's memory
		stats tcp.BpfTcpStats
	)
	for attempt := 1; ; attempt++ {
		if attempt > 100 {
			t.Fatal("no socket got a freed one's memory in 100 attempts")
		}
		fd1 := trackedDial(t, a, self, ln.sa)
		var o tcp.BpfOwner
		key, o = ownerOf(t, a, pid)
		was := sockPointer(t, fd1)
		fd2 := -1
		if passive { // made before the free, so that the child, not it, gets the memory
			fd2 = newSocket(t)
		}
		syscall.Close(fd1)
		if err := a.sys.tcp.Owners.Update(key, &o, ebpf.UpdateNoExist); err != nil {
			t.Fatalf("putting the owner back as an unseen close leaves it: %v", err)
		}
		if err := a.sys.tcp.Tcp.Lookup(uint32(pid), &stats); err != nil {
			t.Fatal(err)
		}
		if passive {
			if err := syscall.Connect(fd2, ln2Addr); err != nil {
				t.Fatal(err)
			}
			sock = acceptFD(t, ln2)
			t.Cleanup(func() { syscall.Close(fd2) }) // open until the end: the child stays established
		} else if next == staleListen {
			sock = newSocket(t)
			listenAt(t, sock, 16)
		} else {
			sock = dialNonblocking(t, ln.sa)
		}
		if sockPointer(t, sock) == was {
			t.Logf("attempt %d: the untracked socket has the freed one's memory", attempt)
			break
		}
		syscall.Close(sock)
		a.sys.tcp.Owners.Delete(key) // gone already if another socket took the memory
	}
	t.Cleanup(func() { syscall.Close(sock) })
	if next == staleConnect {
		ln.acceptOne(t) // room for the dialler's next SYN: it opens
	}
	if next != staleListen {
		awaitEstablished(t, sock, "untracked socket")
	}
	if _, err := a.Snapshot(); err != nil { // recount runs too
		t.Fatal(err)
	}
	var o tcp.BpfOwner
	if err := a.sys.tcp.Owners.Lookup(key, &o); err == nil {
		t.Errorf("the stale owner is still there, taken for the untracked socket: %+v", o)
	}
	if next == staleListen {
		// The listener's LISTEN -> CLOSE runs in this close (no other reference to it is left): an owner still at
		// its address is deleted and counted there.
		syscall.Close(sock)
		sock = -1
	}
	var got tcp.BpfTcpStats
	if err := a.sys.tcp.Tcp.Lookup(uint32(pid), &got); err != nil {
		t.Fatal(err)
	}
	if got != stats {
		t.Errorf("the stale owner's process counted the untracked socket's events: %+v, was %+v", got, stats)
	}
}

// listenLoopback is a listening TCP socket on a loopback port of its own, with the backlog given, closed when the
// test ends, and its address.
func listenLoopback(t *testing.T, backlog int) (int, *syscall.SockaddrInet4) {
	t.Helper()
	fd := newSocket(t)
	t.Cleanup(func() { syscall.Close(fd) })
	return fd, listenAt(t, fd, backlog)
}

// listenAt makes TCP socket fd listen on a loopback port of its own, with the backlog given, and returns its address.
func listenAt(t *testing.T, fd, backlog int) *syscall.SockaddrInet4 {
	t.Helper()
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4)
}

func newSocket(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func acceptFD(t *testing.T, fd int) int {
	t.Helper()
	nfd, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	return nfd
}

// dialNonblocking starts a connect to addr from a new socket and returns it connecting (SYN_SENT): its SYN_SENT
// change has run when this returns.
func dialNonblocking(t *testing.T, addr *syscall.SockaddrInet4) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Connect(fd, addr); err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		t.Fatal(err)
	}
	return fd
}

// trackedDial is dialNonblocking with the test process tracked (its inode in tracked_files) for that connect only:
// the probe makes an owner for the socket, and for no later one of the process.
func trackedDial(t *testing.T, a *Agent, self uint64, addr *syscall.SockaddrInet4) int {
	t.Helper()
	if err := a.sys.tcp.TrackedFiles.Put(self, uint8(1)); err != nil {
		t.Fatal(err)
	}
	fd := dialNonblocking(t, addr)
	if err := a.sys.tcp.TrackedFiles.Delete(self); err != nil {
		t.Fatal(err)
	}
	return fd
}

// awaitEstablished waits until the TCP socket fd (what it is, for the failure) is ESTABLISHED.
func awaitEstablished(t *testing.T, fd int, what string) {
	t.Helper()
	eventually(t, func() (bool, string) {
		info, err := tcpInfo(fd)
		if err != nil {
			t.Fatal(err)
		}
		return info.State == tcpEstablished, fmt.Sprintf("%s in state %d, want established", what, info.State)
	})
}

// sockPointer is the struct sock pointer /proc/net/tcp gives for socket fd (hashed unless kptr_restrict lets root see
// it: either way equal for one address, and the same socket's).
func sockPointer(t *testing.T, fd int) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/thread-self/net/tcp") // the calling thread's network namespace
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ino := strconv.FormatUint(st.Ino, 10)
	for sc := bufio.NewScanner(f); sc.Scan(); {
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode refcnt pointer ...
		if fields := strings.Fields(sc.Text()); len(fields) > 11 && fields[9] == ino {
			return fields[11]
		}
	}
	t.Fatalf("socket inode %s not in the calling thread's /proc/thread-self/net/tcp", ino)
	return ""
}

// TestTCPStaleOpenOwnerCloseCountedOnce: the close of an open connection no program saw is counted once, whether the
// agent's sock_diag check finds it gone first ("agent first") or an untracked socket that gets its memory and
// connects forgets its owner first ("program first", tcp.c's forget at SYN_SENT): each counts only when its delete
// of the owner succeeds. Review of c591911e, which added the second path beside the first.
func TestTCPStaleOpenOwnerCloseCountedOnce(t *testing.T) {
	t.Run("agent first", func(t *testing.T) { testStaleOpenOwner(t, true) })
	t.Run("program first", func(t *testing.T) { testStaleOpenOwner(t, false) })
}

func testStaleOpenOwner(t *testing.T, agentFirst bool) {
	_, a := probedSelf(t, Config{})
	ln := newFullListener(t)              // the untracked socket's connect stays connecting: no other change
	ln2, ln2Addr := listenLoopback(t, 16) // the tracked connect's, which opens
	self, pid := selfInode(t), os.Getpid()
	// The test process is no target of the agent (probedSelf probes a copy), so its counts are read here: the
	// program's, and the closes the agent's check counted.
	counts := func() tcp.BpfTcpStats {
		t.Helper()
		if _, err := a.Snapshot(); err != nil {
			t.Fatal(err)
		}
		var s tcp.BpfTcpStats
		if err := a.sys.tcp.Tcp.Lookup(uint32(pid), &s); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		if u := a.sys.unseen[uint32(pid)]; u.start == s.Start {
			s.Closed += u.closed
		}
		a.mu.Unlock()
		return s
	}

	defer onCPU0(t)()

	for attempt := 1; ; attempt++ {
		if attempt > 100 {
			t.Fatal("no socket got a freed one's memory in 100 attempts")
		}
		fd1 := trackedDial(t, a, self, ln2Addr)
		awaitEstablished(t, fd1, "tracked socket")
		counts() // recount counts the open if no program saw it: the owner is open from here
		key, o := ownerOf(t, a, pid)
		if o.Established != openCounted {
			t.Fatalf("owner of this process's tracked connect: %+v, want it open", o)
		}
		syscall.Close(acceptFD(t, ln2))
		ptr := sockPointer(t, fd1)
		// A RST: the close's CLOSE runs in this close, seen, and the socket is freed at once.
		if err := syscall.SetsockoptLinger(fd1, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0}); err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd1)
		// Its CLOSE runs in this process, so a program sees it; should none have, the owner goes uncounted here,
		// and is put back below all the same.
		a.sys.tcp.Owners.Delete(key)
		base := counts()
		if err := a.sys.tcp.Owners.Update(key, &o, ebpf.UpdateNoExist); err != nil {
			t.Fatalf("putting the owner back as an unseen close leaves it: %v", err)
		}
		if agentFirst {
			counts()
		}
		sock := dialNonblocking(t, ln.sa)
		if sockPointer(t, sock) != ptr {
			syscall.Close(sock)
			a.sys.tcp.Owners.Delete(key)
			continue
		}
		t.Logf("attempt %d: the untracked socket has the freed one's memory", attempt)
		got := counts()
		syscall.Close(sock)
		if want := base; got != (tcp.BpfTcpStats{Active: want.Active, Passive: want.Passive, Closed: want.Closed + 1,
			Failed: want.Failed, Retrans: want.Retrans, Start: want.Start}) {
			t.Errorf("counts %+v, want those before (%+v) and the unseen close once", got, base)
		}
		if err := a.sys.tcp.Owners.Lookup(key, &o); err == nil {
			t.Errorf("the stale owner is still there: %+v", o)
		}
		return
	}
}

// onCPU0 locks the calling goroutine to its thread and the thread to CPU 0, where the kernel hands a freed socket's
// memory to the next socket made (its slab's per-CPU free list), and returns what undoes both.
func onCPU0(t *testing.T) (undo func()) {
	t.Helper()
	runtime.LockOSThread()
	var was, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	return func() {
		unix.SchedSetaffinity(0, &was)
		runtime.UnlockOSThread()
	}
}

// selfInode is the inode number of this test binary, as tracked_files keys a tracked executable.
func selfInode(t *testing.T) uint64 {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(exe, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// ownerOf is the socket and owner of process pid's one tracked socket.
func ownerOf(t *testing.T, a *Agent, pid int) (uint64, tcp.BpfOwner) {
	t.Helper()
	var (
		key uint64
		o   tcp.BpfOwner
	)
	for it := a.sys.tcp.Owners.Iterate(); it.Next(&key, &o); {
		if int(o.Tgid) == pid {
			return key, o
		}
	}
	t.Fatalf("no owner of pid %d's tracked connect", pid)
	return 0, o
}
