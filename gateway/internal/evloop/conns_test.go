package evloop

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
)

// TestClientsOverTheCapGet503: with two clients open (silent, each free to
// hold its first 16 KiB outside the budget), a third is answered 503
// gateway-busy and closed, and counted; once one of the two has gone a new
// client is served. Without the cap every client was taken, whatever the
// count: 5,000 slow ones held some 101 MB (README).
func TestClientsOverTheCapGet503(t *testing.T) {
	addr, s := startServerS(t, proxy.Options{}, Options{MaxClients: 2, ReadTimeout: time.Minute})
	// A round trip first: the start's probe connection was accepted before
	// it, so once both are closed nothing else is counted.
	if r := roundTrips(t, addr, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]; r.StatusCode() != 200 {
		t.Fatalf("a first client: %d %q", r.StatusCode(), r.Body())
	}
	waitFor(t, "the first clients gone", func() bool { return s.conns.Load() == 0 })
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\nX-Pad: "+strings.Repeat("x", 8000)); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, "two clients open", func() bool { return s.conns.Load() == 2 })

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n") // may find the connection closed: the answer is what counts
	br := bufio.NewReader(c)
	var r fasthttp.Response
	if err := r.Read(br); err != nil {
		t.Fatalf("the client over the cap: %v, want a 503", err)
	}
	if r.StatusCode() != 503 || string(r.Header.ContentType()) != "application/problem+json" ||
		!strings.Contains(string(r.Body()), "gateway-busy") || string(r.Header.Peek("Retry-After")) != "1" || !r.ConnectionClose() {
		t.Errorf("the client over the cap got %d %q %q, want 503 gateway-busy problem+json, Retry-After, Connection: close",
			r.StatusCode(), r.Header.Peek("Retry-After"), r.Body())
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the connection over the cap was not closed after its answer")
	}
	if n := s.connsRefused.Load(); n != 1 {
		t.Errorf("%d refusals counted, want 1", n)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d client connections counted after the refusal, want 2", n)
	}

	held[0].Close()
	waitFor(t, "one of the two gone", func() bool { return s.conns.Load() == 1 })
	if r := roundTrips(t, addr, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]; r.StatusCode() != 200 {
		t.Fatalf("a client under the cap again: %d %q", r.StatusCode(), r.Body())
	}
	held[1].Close()
	waitFor(t, "no client counted once all went", func() bool { return s.conns.Load() == 0 })
}

// TestConnsCountedBackToZero: client connections ended every way there is
// (by the client, reset, refused 400, 408, 503 past the budget or the cap,
// 504, 505, idle, Connection: close, gone while upstream, the server's
// stop) leave none counted: a close path that missed OnClose's uncount
// would leak a little of the cap at each, until every client was refused.
func TestConnsCountedBackToZero(t *testing.T) {
	const maxClients = 8
	addr, s := startServerS(t, proxy.Options{}, Options{MaxClients: maxClients, MaxBodyBytes: 1 << 20, HeldBytes: 64 << 10,
		ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, Linger: 100 * time.Millisecond, Loops: 2})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	// answered sends raw on a new connection, reads one answer, and closes
	// it once the server has (close) or at once.
	answered := func(raw string, status int, close bool) {
		t.Helper()
		c := dial()
		defer c.Close()
		_, _ = io.WriteString(c, raw) // a refusal may close before all of it is taken
		br := bufio.NewReader(c)
		var r fasthttp.Response
		if err := r.Read(br); err != nil || r.StatusCode() != status {
			t.Fatalf("%q: %d %v, want %d", raw[:min(len(raw), 40)], r.StatusCode(), err, status)
		}
		if close {
			_, _ = io.Copy(io.Discard, br)
		}
	}
	get := "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n"
	for range 3 {
		answered(get, 200, false)                                                                     // the client closes
		answered("GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n", 200, true) // the server does
		answered("BAD\r\n\r\n", 400, true)                                                            // refused, lingering
		answered("GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n", 504, false)                  // the route's deadline
		answered("POST /api/v1/orders HTTP/2.0\r\nHost: gw\r\nContent-Length: 9000\r\n\r\nxx", 505, true)
		answered("POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: 500000\r\n\r\n"+strings.Repeat("x", 200<<10), 503, true) // past the budget
		answered("", 408, true)                                                                                                        // silent past the read timeout
		idle := dial()                                                                                                                 // idle past the idle timeout
		if _, err := io.WriteString(idle, get); err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, idle)
		idle.Close()
		gone := dial() // gone while its request is upstream
		_, _ = io.WriteString(gone, "GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
		waitFor(t, "the request upstream", func() bool { return s.inflight() >= 1 })
		gone.Close()
		uncounted := func(what string) {
			t.Helper()
			waitFor(t, what, func() bool { return s.conns.Load() == 0 })
		}
		uncounted("the round's clients gone")
		reset := dial().(*net.TCPConn) // reset mid-request, once accepted (not in the listen backlog)
		_, _ = io.WriteString(reset, "POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\nx")
		waitFor(t, "the client to reset accepted", func() bool { return s.conns.Load() == 1 })
		_ = reset.SetLinger(0)
		reset.Close()
		// The cap full (one more is refused), once the reset client is
		// uncounted: still counted, it would leave room for fewer.
		uncounted("the reset client gone")
		var full []net.Conn
		for range maxClients {
			c := dial()
			_, _ = io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\n")
			full = append(full, c)
		}
		waitFor(t, "the cap full", func() bool { return s.conns.Load() == maxClients })
		answered(get, 503, true)
		for _, c := range full {
			c.Close()
		}
		uncounted("every client gone")
	}
	if s.connsRefused.Load() != 3 || s.budget.refused.Load() != 3 {
		t.Errorf("%d refused over the cap, %d past the budget; want 3 of each", s.connsRefused.Load(), s.budget.refused.Load())
	}
	for range maxClients { // open, idle or mid-request, when the server stops
		c := dial()
		defer c.Close()
		_, _ = io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\n")
	}
	waitFor(t, "the cap full", func() bool { return s.conns.Load() == maxClients })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no client counted after the stop", func() bool { return s.conns.Load() == 0 })
}
