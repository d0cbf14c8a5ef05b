// Package upstreamtest starts upstreams for the gateway's tests whose
// answers the test writes byte for byte, so that they can misbehave in ways
// a real HTTP server would not (an interim answer with the final one much
// later, say). It is to the transports' tests what net/http/httptest is to
// a handler's.
package upstreamtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Raw listens on loopback and answers every request of every connection
// with answer, which writes the answer's bytes to w itself; it returns the
// address. Requests are read with net/http, one after the other on a
// connection, so a connection's next request waits for answer to return.
// Listener and connections are closed when t ends.
func Raw(t testing.TB, answer func(w io.Writer, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					_ = c.Close()
				}()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					answer(c, req)
					// The next request starts after this one's body.
					if _, err := io.Copy(io.Discard, req.Body); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// OK writes a 200 answer with body, framed by Content-Length.
func OK(w io.Writer, body string) {
	_, _ = fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// Silent is an upstream that never answers, for the tests of a client
// that goes away while its request is upstream. leave sends raw to the
// gateway at gw, waits until it reaches the upstream, closes the client's
// connection and fails the test unless the upstream's connection is then
// closed (io.EOF) within wait; it returns how long that took. Silent
// returns the upstream's address.
func Silent(t testing.TB, wait time.Duration) (addr string, leave func(gw, raw string) time.Duration) {
	arrived, ended := make(chan struct{}, 1), make(chan error, 1)
	addr = Raw(t, func(w io.Writer, _ *http.Request) {
		arrived <- struct{}{}
		c := w.(*net.TCPConn)
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, err := c.Read(make([]byte, 1))
		ended <- err
	})
	return addr, func(gw, raw string) time.Duration {
		t.Helper()
		c, err := net.Dial("tcp", gw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the request never reached the upstream")
		}
		gone := time.Now()
		_ = c.Close()
		if err := <-ended; err != io.EOF {
			t.Fatalf("the upstream's connection after the client went: %v (%v later), want it closed (EOF)",
				err, time.Since(gone).Round(time.Millisecond))
		}
		return time.Since(gone)
	}
}
