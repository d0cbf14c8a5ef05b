package sockio

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// PeerGone tells a client that closed from one that is quiet or has sent
// bytes (a pipelined request, which it leaves for the reader), and the
// look allocates nothing: the fasthttp transport's watcher makes it for
// every client with a request upstream, every 50 ms. It allocated twice
// (the Control callback's closure and its result) on every look.
func TestPeerGone(t *testing.T) {
	c, peer := pair(t)
	if c.PeerGone() {
		t.Fatal("a quiet peer is gone")
	}
	if _, err := io.WriteString(peer, "G"); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if waiting(t, c) > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the peer's byte never arrived")
		}
	}
	if c.PeerGone() {
		t.Fatal("a peer with a byte waiting is gone")
	}
	if allocs := testing.AllocsPerRun(100, func() { c.PeerGone() }); allocs != 0 {
		t.Errorf("PeerGone allocates %.1f times per look, want 0", allocs)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'G' {
		t.Fatalf("Read after the looks = %q, %v; want the peer's byte", b, err)
	}
	peer.Close()
	for end := time.Now().Add(5 * time.Second); !c.PeerGone(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a peer that closed is not gone after 5 s")
		}
	}
}

// A reset is a peer gone too.
func TestPeerGoneAfterReset(t *testing.T) {
	c, peer := pair(t)
	_ = peer.(*net.TCPConn).SetLinger(0) // close with RST
	peer.Close()
	for end := time.Now().Add(5 * time.Second); !c.PeerGone(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a peer that reset is not gone after 5 s")
		}
	}
}

// waiting is how many bytes c's socket holds, up to 1, taking none.
func waiting(t *testing.T, c *Conn) int {
	t.Helper()
	n := 0
	if err := c.raw.Control(func(fd uintptr) {
		n, _, _ = syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
