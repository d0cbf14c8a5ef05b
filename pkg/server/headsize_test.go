package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// A request head over MaxHeaderBytes is a 431 in the API's error format
// before any handler runs. net/http answered every head over its own limit
// (1 MiB, reading 4 KiB past it) with a 431 in plain text; its limit now
// stands 64 KiB above MaxHeaderBytes, so only a head too long for it is its
// plain 431, and no more is read.
func TestOversizedHeadIsProblem431(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	ran := 0
	s.Router().GET("/orders", func(c *gin.Context) { ran++; c.Status(http.StatusOK) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	// headOf is a request head of exactly n bytes, as headBytes counts it
	// and as sent (no white space after the colons).
	headOf := func(n int) string {
		h := "GET /orders HTTP/1.1\r\nHost:test\r\nConnection:close\r\nX-Pad:"
		return h + strings.Repeat("p", n-len(h)-len("\r\n\r\n")) + "\r\n\r\n"
	}
	for _, c := range []struct {
		name        string
		size        int
		status      int
		contentType string
	}{
		{"at the limit", MaxHeaderBytes, http.StatusOK, ""},
		{"a byte over", MaxHeaderBytes + 1, http.StatusRequestHeaderFieldsTooLarge, problem.ContentType},
		{"8 KiB over", MaxHeaderBytes + 8<<10, http.StatusRequestHeaderFieldsTooLarge, problem.ContentType},
		{"over net/http's limit", serverHeaderBytes + 8<<10, http.StatusRequestHeaderFieldsTooLarge, "text/plain; charset=utf-8"},
	} {
		ran = 0
		resp, body := sendHead(t, ln.Addr().String(), headOf(c.size))
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != c.contentType {
			t.Errorf("%s (%d bytes): %d %q, want %d %q: %.200s", c.name, c.size, resp.StatusCode, resp.Header.Get("Content-Type"),
				c.status, c.contentType, body)
		}
		if want := c.status == http.StatusOK; (ran > 0) != want {
			t.Errorf("%s: the handler ran %d times, want it to run: %v", c.name, ran, want)
		}
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("a client's oversized head logged an error:\n%s", logs)
	}
}

// sendHead writes head on a connection of its own while reading the answer:
// net/http answers a head over its limit before it has read the rest.
func sendHead(t *testing.T, addr, head string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.WriteString(conn, head) }() // cut short once the server answers and closes
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to a %d-byte head: %v", len(head), err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// headBytes is the length of a head sent with no optional white space, and
// less for one sent with it or with a Host field an absolute-form request
// line overrides: it never refuses a head within MaxHeaderBytes as sent.
func TestHeadBytesCountsTheFewestBytesSent(t *testing.T) {
	for _, c := range []struct {
		raw   string
		exact bool
	}{
		{"GET /a?b=1 HTTP/1.1\r\nHost:x.example\r\nA:1\r\nA:2\r\nCookie:k=v\r\n\r\n", true},
		{"GET / HTTP/1.0\r\nA:\r\n\r\n", true},
		{"GET /a HTTP/1.1\r\nHost: x.example\r\nA:  1  \r\n\r\n", false},
		{"GET http://x.example/a HTTP/1.1\r\nHost:other.example\r\n\r\n", false},
	} {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(c.raw)))
		if err != nil {
			t.Fatalf("%q: %v", c.raw, err)
		}
		if n := headBytes(r); n > len(c.raw) || c.exact && n != len(c.raw) {
			t.Errorf("headBytes(%q) = %d, sent in %d (exact: %v)", c.raw, n, len(c.raw), c.exact)
		}
	}
}
