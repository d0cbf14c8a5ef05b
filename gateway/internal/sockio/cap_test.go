package sockio

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// A Listener with a Cap hands the server no more than Max connections at
// once; one more is answered Full and closed, and a place is free again
// once a held connection's socket is closed, its lingering close included.
func TestListenerCapRefusesOverMax(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	capl := &Cap{Max: 2, Full: []byte("FULL")}
	refused := make(chan net.Addr, 4)
	capl.Refused = func(a net.Addr) { refused <- a }
	ln := Listener{Listener: inner, Cap: capl}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	var held []net.Conn
	for range 2 {
		dial()
		held = append(held, <-accepted)
	}
	over := dial()
	if got, err := io.ReadAll(over); err != nil || string(got) != "FULL" {
		t.Fatalf("the third client read %q, %v; want FULL, then EOF", got, err)
	}
	<-refused
	if n := capl.Open(); n != 2 {
		t.Fatalf("Open() = %d with two held, want 2", n)
	}
	// The server closes one (lingering until its client closes too).
	client := dial() // refused as well: the cap is still full
	if got, _ := io.ReadAll(client); string(got) != "FULL" {
		t.Fatalf("a client while full read %q, want FULL", got)
	}
	<-refused
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for capl.Open() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Open() = %d after a held connection's close, want 1", capl.Open())
		}
		time.Sleep(10 * time.Millisecond)
	}
	dial()
	select {
	case c := <-accepted:
		c.Close()
	case a := <-refused:
		t.Fatalf("%v refused after a place was freed", a)
	}
}

// With no Full answer (the TLS listener: plain bytes before a handshake
// are garbage to the client) a connection over the cap is closed without a
// byte.
func TestListenerCapWithoutAnswerClosesSilently(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listener{Listener: inner, Cap: &Cap{Max: 0}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Fatalf("read %q, %v; want nothing, then EOF", got, err)
	}
}

// Each connection gives its place back once, however it is closed: Close
// from several goroutines at once (fasthttp's idle close racing a
// shutdown), Close while a Read waits (closed at once, not lingering), and
// a connection Wrap leaves as it is. A second release would let the
// listener hold more than Max; run with -race.
func TestCapReleasesEachConnectionOnce(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	capl := &Cap{Max: 64}
	ln := Listener{Listener: inner, Cap: capl}
	t.Cleanup(func() { ln.Close() })
	const n = 16
	var clients []net.Conn
	var served []net.Conn
	for range n {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		served = append(served, s)
	}
	if got := capl.Open(); got != n {
		t.Fatalf("Open() = %d with %d accepted, want %d", got, n, n)
	}
	var wg sync.WaitGroup
	for i, s := range served {
		if i%2 == 1 { // a Read waiting when Close comes
			reading := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				close(reading)
				_, _ = s.Read(make([]byte, 1))
			}()
			<-reading
		}
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = s.Close()
			}()
		}
	}
	for _, c := range clients { // ends the lingering closes
		c.Close()
	}
	wg.Wait()

	// A connection Wrap leaves as it is (not TCP) is counted too.
	a, b := net.Pipe()
	defer b.Close()
	pipes := Listener{Listener: &oneConn{c: a}, Cap: capl}
	p, err := pipes.Accept()
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Close()
		}()
	}
	wg.Wait()

	deadline := time.Now().Add(5 * time.Second)
	for capl.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Open() = %d once every connection was closed, want 0", capl.Open())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// oneConn is a listener that hands out c once, then fails.
type oneConn struct {
	net.Listener
	c net.Conn
}

func (l *oneConn) Accept() (net.Conn, error) {
	if l.c == nil {
		return nil, net.ErrClosed
	}
	c := l.c
	l.c = nil
	return c, nil
}
