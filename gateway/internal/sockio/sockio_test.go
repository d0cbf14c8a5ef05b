package sockio

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// loopback returns both ends of a loopback TCP connection, the accepted one
// through ln's wrapper when wrap is set.
func loopback(t testing.TB, wrap func(net.Listener) net.Listener) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	al := ln
	if wrap != nil {
		al = wrap(ln)
	}
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := al.Accept()
		ch <- c
	}()
	dialed, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if accepted = <-ch; accepted == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { dialed.Close(); accepted.Close() })
	return dialed, accepted
}

// pair returns a wrapped server-side connection and the plain client side of
// a loopback TCP connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	client, srv := loopback(t, func(ln net.Listener) net.Listener { return Listener{Listener: ln} })
	c, ok := srv.(*Conn)
	if !ok {
		t.Fatalf("Listener accepted a %T, want *sockio.Conn", srv)
	}
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

// ReadTimedOut tells a connection whose Read failed at its deadline, also
// under TLS (NetConn), from one that read or failed otherwise.
func TestReadTimedOut(t *testing.T) {
	c, peer := pair(t)
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 8)); err != nil || ReadTimedOut(c) {
		t.Fatalf("after a read: %v, timed out %v", err, ReadTimedOut(c))
	}
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 8)); err == nil || !ReadTimedOut(c) || !ReadTimedOut(tls.Server(c, &tls.Config{})) {
		t.Fatalf("after a read past the deadline: %v, timed out %v", err, ReadTimedOut(c))
	}
	if ReadTimedOut(peer) {
		t.Fatal("a connection sockio did not wrap timed out")
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
// are built once), which matters at two of each per proxied request; nor
// does an exchange connection's held-back request.
func TestNoAllocations(t *testing.T) {
	c, peer := pair(t)
	x, echo := exchangePair(t)
	go func() { io.Copy(echo, echo) }()
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
		if _, err := x.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(x, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per read+write round and exchange", allocs)
	}
}

// exchangePair returns a WrapExchange client connection and the plain
// server side of a loopback TCP connection.
func exchangePair(t testing.TB) (*Conn, net.Conn) {
	t.Helper()
	raw, srv := loopback(t, nil)
	c, ok := WrapExchange(raw).(*Conn)
	if !ok {
		t.Fatalf("WrapExchange returned a %T, want *sockio.Conn", raw)
	}
	t.Cleanup(func() { c.Close() })
	return c, srv
}

// A small request waits for the Read that expects its answer, and that Read
// sends it and returns the answer.
func TestExchangeSendsRequestOnRead(t *testing.T) {
	c, peer := exchangePair(t)
	if n, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil || n != 18 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if n, err := peer.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer read %q, %v before the client's Read; want nothing yet", buf[:n], err)
	}
	peer.SetReadDeadline(time.Time{})
	go func() {
		b := make([]byte, 64)
		if n, err := peer.Read(b); err == nil && string(b[:n]) == "GET / HTTP/1.1\r\n\r\n" {
			peer.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

// Answers that come back at once, before the client has parked, are never
// missed: the readiness is reset before the request leaves. A missed answer
// would show as a deadline error.
func TestExchangeNeverMissesAnAnswer(t *testing.T) {
	c, peer := exchangePair(t)
	go func() { io.Copy(peer, peer) }() // echo
	msg := []byte("ping-ping-ping")
	buf := make([]byte, 64)
	for i := range 5000 {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
	}
}

// Writes above maxDeferred go out at once, after anything held back, in
// order.
func TestExchangeLargeWriteKeepsOrder(t *testing.T) {
	c, peer := exchangePair(t)
	small := []byte("head\r\n")
	large := bytes.Repeat([]byte("b"), 4*maxDeferred)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	if _, err := c.Write(small); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(large); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if b := <-got; !bytes.Equal(b, append(small, large...)) {
		t.Fatalf("peer received %d bytes, want %d in order", len(b), len(small)+len(large))
	}
}

// A request held back on a connection the peer has reset fails the Read
// with a write error, as an immediate write would have failed.
func TestExchangeSendErrorOnRead(t *testing.T) {
	c, peer := exchangePair(t)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(20 * time.Millisecond) // let the RST arrive
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatalf("held-back Write = %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 8))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("Read after sending to a reset peer = %v, want a write OpError (ECONNRESET or EPIPE)", err)
	}
}

// A pooled connection the upstream closed while idle (its FIN long
// consumed by the netpoller) must fail the next exchange promptly, not wait
// for the deadline: the request draws a reset, which wakes the Read.
func TestExchangeToClosedPeerFailsFast(t *testing.T) {
	c, peer := exchangePair(t)
	peer.Close()
	time.Sleep(20 * time.Millisecond) // the FIN arrives while nobody reads
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatalf("held-back Write = %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err := c.Read(make([]byte, 8))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("exchange on a closed connection = %v after %v, want a prompt EOF or reset", err, time.Since(start))
	}
}

// A peer that closed (its FIN, here with its read side still open to see
// what arrives) while the connection sat idle gets none of the request,
// held back or large, and the exchange fails with ErrPeerClosed: the
// caller may send the request on another connection, whatever it is.
func TestExchangeToClosedPeerSendsNothing(t *testing.T) {
	large := bytes.Repeat([]byte("b"), maxDeferred+1)
	for _, req := range [][]byte{[]byte("POST / HTTP/1.1\r\n\r\n"), large} {
		c, peer := exchangePair(t)
		if err := peer.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the FIN arrives while nobody reads
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Write(req)
		if err == nil {
			_, err = c.Read(make([]byte, 8))
		}
		if !errors.Is(err, ErrPeerClosed) {
			t.Fatalf("%d-byte request to a closed peer: %v, want ErrPeerClosed", len(req), err)
		}
		buf := make([]byte, 64)
		peer.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if n, err := peer.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%d-byte request: peer received %q, %v; want nothing", len(req), buf[:n], err)
		}
	}
}

// answeredTwice returns an exchange pair after one exchange whose answer
// the peer sent again, unasked, while the connection sat idle.
func answeredTwice(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	c, peer := exchangePair(t)
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ask 1")); err != nil {
		t.Fatal(err)
	}
	go func() {
		b := make([]byte, 64)
		if n, _ := peer.Read(b); string(b[:n]) == "ask 1" {
			peer.Write([]byte("answer 1"))
		}
	}()
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "answer 1" {
		t.Fatalf("first exchange = %q, %v", buf[:n], err)
	}
	if _, err := peer.Write([]byte("answer 1 again")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // it arrives while nobody reads
	return c, peer
}

// Bytes the peer sent while the connection sat idle (an upstream that
// answered twice) fail the next exchange instead of becoming its answer,
// and its request is not sent: taken as the answer, they would shift every
// later answer on the connection to the request after its own.
func TestExchangeRefusesUnaskedBytes(t *testing.T) {
	c, peer := answeredTwice(t)
	buf := make([]byte, 64)
	if _, err := c.Write([]byte("ask 2")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); !errors.Is(err, ErrUnasked) {
		t.Fatalf("exchange after unasked bytes = %q, %v; want ErrUnasked", buf[:n], err)
	}
	peer.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if n, err := peer.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer received %q, %v; want the request held back", buf[:n], err)
	}
}

// A request too large to hold back (a 5 KB body or cookie) leaves in Write,
// before any Read could look for unasked bytes: Write looks, and refuses
// to send, whether the head was held back first (fasthttp flushes 4 KiB
// buffers) or the whole request comes in one Write. Sent, it would be
// answered by what was waiting, another request's answer.
func TestExchangeRefusesUnaskedBytesBeforeALargeRequest(t *testing.T) {
	large := bytes.Repeat([]byte("b"), maxDeferred+1)
	for _, writes := range [][][]byte{{large}, {[]byte("POST / HTTP/1.1\r\n"), large}} {
		c, peer := answeredTwice(t)
		buf := make([]byte, 64)
		var err error
		for _, w := range writes {
			if _, err = c.Write(w); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrUnasked) {
			t.Fatalf("%d-byte request after unasked bytes: Write = %v; want ErrUnasked", len(large), err)
		}
		peer.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if n, err := peer.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("peer received %q, %v; want nothing of the request", buf[:n], err)
		}
	}
}

// A large request on a clean connection goes out as before, and its answer
// is read: the look before it found nothing to refuse.
func TestExchangeLargeRequestOnACleanConnection(t *testing.T) {
	c, peer := exchangePair(t)
	large := bytes.Repeat([]byte("b"), 2*maxDeferred)
	go func() {
		for range 3 {
			if _, err := io.ReadFull(peer, make([]byte, len(large))); err != nil {
				return
			}
			peer.Write([]byte("answer"))
		}
	}()
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range 3 {
		if _, err := c.Write(large); err != nil {
			t.Fatalf("exchange %d: Write = %v", i, err)
		}
		if n, err := io.ReadFull(c, buf[:6]); err != nil || string(buf[:n]) != "answer" {
			t.Fatalf("exchange %d: Read = %q, %v", i, buf[:n], err)
		}
	}
}

// When part of a request went out at once (a large body), the peer may
// answer before the held-back rest is sent; that answer is not unasked.
func TestExchangeEarlyAnswerToLargeRequest(t *testing.T) {
	c, peer := exchangePair(t)
	large := bytes.Repeat([]byte("b"), 2*maxDeferred)
	answered := make(chan struct{})
	go func() {
		if _, err := io.ReadFull(peer, make([]byte, len(large))); err == nil {
			peer.Write([]byte("early answer"))
		}
		close(answered)
	}()
	if _, err := c.Write(large); err != nil {
		t.Fatal(err)
	}
	<-answered
	time.Sleep(20 * time.Millisecond) // the answer is in before the rest leaves
	if _, err := c.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "early answer" {
		t.Fatalf("Read = %q, %v; want the early answer", buf[:n], err)
	}
}

// An exchange on a connection the peer has answered on, which the peer then
// closes or resets after the request arrived and before any byte of its
// answer (its keep-alive idle timeout firing as the request came), fails
// with ErrUnanswered as well as with what the read failed with: the caller
// may send a request that can run twice again. The same on a new
// connection, or after part of the answer came, is the plain failure: no
// race explains those.
func TestExchangeClosedUnansweredOnAReusedConnection(t *testing.T) {
	small, large := []byte("GET / HTTP/1.1\r\n\r\n"), bytes.Repeat([]byte("b"), 2*maxDeferred)
	for _, tc := range []struct {
		name     string
		req      []byte
		answered int  // exchanges answered before
		partial  bool // part of the answer comes before the close
		reset    bool
		want     bool
	}{
		{"reused, FIN", small, 1, false, false, true},
		{"reused, RST", small, 2, false, true, true},
		{"reused, large request, FIN", large, 1, false, false, true},
		{"reused, large request, RST", large, 1, false, true, true},
		{"new, FIN", small, 0, false, false, false},
		{"new, RST", small, 0, false, true, false},
		{"reused, part of the answer, FIN", small, 1, true, false, false},
		{"reused, part of the answer, RST", large, 1, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := exchangePair(t)
			go func() {
				in := make([]byte, len(tc.req))
				for range tc.answered {
					if _, err := io.ReadFull(peer, in); err != nil {
						return
					}
					peer.Write([]byte("answer"))
				}
				if tc.reset {
					peer.Read(in[:1]) // the request has arrived
					peer.(*net.TCPConn).SetLinger(0)
				} else if _, err := io.ReadFull(peer, in); err != nil { // all of it: a FIN, not a reset
					return
				}
				if tc.partial {
					peer.Write([]byte("HTTP/1.1 200 OK\r\n"))
					time.Sleep(20 * time.Millisecond) // read before the close
				}
				peer.Close()
			}()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			for i := range tc.answered {
				if _, err := c.Write(tc.req); err != nil {
					t.Fatalf("exchange %d: Write = %v", i, err)
				}
				if n, err := io.ReadFull(c, buf[:6]); err != nil {
					t.Fatalf("exchange %d: Read = %q, %v", i, buf[:n], err)
				}
			}
			_, err := c.Write(tc.req)
			for err == nil {
				_, err = c.Read(buf)
			}
			if errors.Is(err, ErrUnanswered) != tc.want {
				t.Fatalf("the last exchange failed with %v; ErrUnanswered: %v, want %v", err, errors.Is(err, ErrUnanswered), tc.want)
			}
			cause := errors.Is(err, io.EOF)
			if tc.reset {
				cause = errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
			}
			if !cause {
				t.Fatalf("the last exchange failed with %v, which hides the EOF or reset it was", err)
			}
		})
	}
}
