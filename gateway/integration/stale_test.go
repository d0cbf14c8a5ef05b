package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRequestAfterUpstreamClosedItsIdleConnection: an upstream closes a
// keep-alive connection it has answered on once it sat idle (its idle
// timeout, or a restart at the same address). A request the gateway then
// has for it must go on a live connection, whatever its method: it was
// never sent, so nothing about it is in doubt. On the fasthttp transport a
// POST took the closed connection from the pool and was a 502
// (upstream-unreachable), counted against the upstream by the breaker.
func TestRequestAfterUpstreamClosedItsIdleConnection(t *testing.T) {
	w := newWorld(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var requests atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Closed once idle for 100 ms, as by an idle timeout.
					_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					requests.Add(1)
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			}()
		}
	}()
	g := w.startGateway("DISCOVERY_STATIC="+w.svc+"="+ln.Addr().String(), "GATEWAY_MAX_ATTEMPTS=1")
	for i := range 5 {
		if r := w.do(g, "GET", "/api/v1/products/x", nil, nil); r.Status != 200 {
			t.Fatalf("round %d: GET %d %s", i, r.Status, r.Body)
		}
		time.Sleep(300 * time.Millisecond) // the upstream has closed that connection
		before := requests.Load()
		r := w.do(g, "POST", "/api/v1/users", nil, strings.NewReader("{}"))
		if r.Status != 200 {
			t.Fatalf("round %d: POST after the upstream closed its idle connection: %d %s", i, r.Status, r.Body)
		}
		if n := requests.Load() - before; n != 1 {
			t.Fatalf("round %d: the POST reached the upstream %d times", i, n)
		}
	}
}
