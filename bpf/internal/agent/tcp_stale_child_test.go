package agent

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// TestTCPStaleOwnerIsNotAnUnseenChild: a listener's child whose LISTEN -> SYN_RECV no program saw, at the address of
// a freed target socket whose owner was left connecting, is not taken for that socket at its SYN_RECV ->
// ESTABLISHED: the owner's process is counted nothing and the owner goes. That change looked like a simultaneous
// open's, and the child's open was counted to the owner's process (Active +1; found by review of c591911e, which
// forgets such an owner at the LISTEN -> SYN_RECV a program sees). tcp.c now wants the child's remote end to be where
// the owner connected to (same_socket).
//
// A child normally goes LISTEN -> SYN_RECV -> ESTABLISHED in one softirq (the client's last ACK), so the test takes
// one TCP Fast Open makes at the client's SYN (accepted in SYN_RECV) and drops the SYN-ACK at the client (a socket
// filter) until the owner is put at the child's address, as an unseen LISTEN -> SYN_RECV leaves it; then the
// retransmitted handshake ends in the change the programs see. It runs in a network namespace of its own (newNetns,
// entered by the test's thread: onThreadIn), whose tcp_fastopen it sets (server on, no cookies), on CPU 0 so that the child gets the freed socket's memory (as in
// TestTCPStaleOwnerIsNotAnUntrackedSockets).
func TestTCPStaleOwnerIsNotAnUnseenChild(t *testing.T) {
	_, a := probedSelf(t, Config{})
	self, pid := selfInode(t), os.Getpid()
	defer onCPU0(t)()
	onThreadIn(t, newNetns(t), func() {
		if err := os.WriteFile("/proc/sys/net/ipv4/tcp_fastopen", []byte("0x207"), 0); err != nil {
			t.Fatal(err)
		}
		ln, lnAddr := listenLoopback(t, 16) // the tracked connect's
		tfo := newSocket(t)
		t.Cleanup(func() { syscall.Close(tfo) })
		if err := unix.SetsockoptInt(tfo, unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 16); err != nil {
			t.Fatal(err)
		}
		tfoAddr := listenAt(t, tfo, 16)

		for attempt := 1; ; attempt++ {
			if attempt > 100 {
				t.Fatal("no child got a freed socket's memory in 100 attempts")
			}
			fd1 := trackedDial(t, a, self, lnAddr)
			key, o := ownerOf(t, a, pid)
			o.Established = 0 // left connecting, as a connect whose open and close went unseen leaves it
			was := sockPointer(t, fd1)
			client := fastOpenClient(t) // made before the free, so that the child, not it, gets the memory
			syscall.SetsockoptLinger(fd1, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
			syscall.Close(fd1) // a RST: freed at once
			a.sys.tcp.Owners.Delete(key)
			var stats tcp.BpfTcpStats
			if err := a.sys.tcp.Tcp.Lookup(uint32(pid), &stats); err != nil {
				t.Fatal(err)
			}
			if _, err := syscall.SendmsgN(client, []byte("x"), nil, tfoAddr, unix.MSG_FASTOPEN); err != nil && err != syscall.EINPROGRESS {
				t.Fatal(err)
			}
			child := acceptFD(t, tfo) // in SYN_RECV: its SYN-ACK dropped at the client
			syscall.Close(acceptFDNonblocking(ln))
			if sockPointer(t, child) != was {
				syscall.Close(child)
				syscall.Close(client)
				continue
			}
			t.Logf("attempt %d: the child has the freed socket's memory", attempt)
			t.Cleanup(func() { syscall.Close(child); syscall.Close(client) })
			if info, err := tcpInfo(child); err != nil || info.State != tcpSynRecv {
				t.Fatalf("child in state %+v (%v), want SYN_RECV", info, err)
			}
			if err := a.sys.tcp.Owners.Update(key, &o, ebpf.UpdateNoExist); err != nil {
				t.Fatalf("putting the owner at the child's address: %v", err)
			}
			if err := unix.SetsockoptInt(client, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
				t.Fatal(err)
			}
			awaitEstablished(t, child, "child")
			if _, err := a.Snapshot(); err != nil { // recount runs too
				t.Fatal(err)
			}
			if err := a.sys.tcp.Owners.Lookup(key, &o); err == nil {
				t.Errorf("the stale owner is still there, taken for the child: %+v", o)
			}
			var got tcp.BpfTcpStats
			if err := a.sys.tcp.Tcp.Lookup(uint32(pid), &got); err != nil {
				t.Fatal(err)
			}
			if got != stats {
				t.Errorf("the stale owner's process counted the child's events: %+v, was %+v", got, stats)
			}
			return
		}
	})
}

// tcpSynRecv is TCP_SYN_RECV (include/net/tcp_states.h).
const tcpSynRecv = 3

// fastOpenClient is a non-blocking TCP socket that sends data in its SYN without a cookie and drops every segment it
// receives (a socket filter) until the filter is detached.
func fastOpenClient(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	return fd
}

// acceptFDNonblocking accepts what a listener has queued by now, -1 when nothing.
func acceptFDNonblocking(fd int) int {
	for i := 0; i < 100; i++ {
		nfd, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
		if err == nil {
			return nfd
		}
		time.Sleep(time.Millisecond)
	}
	return -1
}
