package evloop

import (
	"bufio"
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
