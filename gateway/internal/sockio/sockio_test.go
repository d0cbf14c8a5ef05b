package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair returns a wrapped server-side connection and the plain client side of
// a loopback TCP connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wl := Listener{Listener: ln}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := wl.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	c, ok := srv.(*Conn)
	if !ok {
		t.Fatalf("Listener accepted a %T, want *sockio.Conn", srv)
	}
	t.Cleanup(func() { c.Close(); client.Close() })
	return c, client
}

func TestReadWriteBothWays(t *testing.T) {
	c, peer := pair(t)
	if _, err := peer.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if n, err := c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")); err != nil || n != 19 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	n, err = peer.Read(buf)
	if err != nil || string(buf[:n]) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
}

// A write larger than the socket buffers must wait for the reader (EAGAIN,
// then the netpoller) and still deliver every byte in order.
func TestLargeWriteWaitsForSpace(t *testing.T) {
	c, peer := pair(t)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	n, err := c.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	c.CloseWrite()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer received %d bytes, want %d identical", len(b), len(want))
	}
}

func TestReadDeadlineIsTimeout(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v, want a net.Error timeout", err)
	}
}

func TestPeerCloseIsEOF(t *testing.T) {
	c, peer := pair(t)
	peer.Close()
	if _, err := c.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("Read after peer close = %v, want io.EOF", err)
	}
}

func TestUseAfterCloseIsErrClosed(t *testing.T) {
	c, _ := pair(t)
	c.Close()
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// A reset connection reports ECONNRESET the way the net package does, so
// callers' errors.Is checks keep working.
func TestResetIsErrno(t *testing.T) {
	c, peer := pair(t)
	peer.(*net.TCPConn).SetLinger(0) // close with RST
	peer.Close()
	_, err := c.Read(make([]byte, 8))
	var oe *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after RST = %v, want a read OpError wrapping ECONNRESET", err)
	}
}

// Close from another goroutine wakes a reader parked in the netpoller.
func TestCloseWakesBlockedRead(t *testing.T) {
	c, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("parked Read after Close = %v, want net.ErrClosed", err)
	}
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a non-TCP connection")
	}
}

// Reads and writes on a connection allocate nothing (the RawConn callbacks
// are built once), which matters at two of each per proxied request.
func TestNoAllocations(t *testing.T) {
	c, peer := pair(t)
	buf := make([]byte, 64)
	msg := []byte("ping")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per read+write round", allocs)
	}
}
