package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// TestSlowBodyIsCutOff has a client on a real connection send its body a byte every 10 ms, as an attacker holding
// connections open does. The server stops reading at ReadTimeout and answers 408, long before the body is complete;
// before, nothing bounded the body, and the handler goroutine waited for all of it.
func TestSlowBodyIsCutOff(t *testing.T) {
	const bodyBytes = 500 // 5 s at a byte per 10 ms
	s, logs := newTestServer(t, Options{ReadTimeout: 200 * time.Millisecond})
	s.Router().POST("/orders", func(c *gin.Context) {
		var v map[string]any
		if DecodeJSON(c, &v) {
			c.Status(http.StatusCreated)
		}
	})
	addr := serveOnLoopback(t, s)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := fmt.Sprintf("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n[", bodyBytes)
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int32
	sent.Store(1)
	go func() {
		for sent.Load() < bodyBytes {
			time.Sleep(10 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				return // the server closed the connection
			}
			sent.Add(1)
		}
	}()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response to the slow body: %v\n%s", err, logs)
	}
	res.Body.Close()
	if n := sent.Load(); res.StatusCode != http.StatusRequestTimeout || n >= bodyBytes {
		t.Fatalf("status %d after %d of %d body bytes, want 408 before the body was complete", res.StatusCode, n, bodyBytes)
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("a client's slow body logged as a server error:\n%s", logs)
	}
}

// TestReadTimeoutLeavesAHandlerThatReadItsBody: the bound is on reading only. A handler that has read its body and
// then works past ReadTimeout keeps its context and its response reaches the client.
func TestReadTimeoutLeavesAHandlerThatReadItsBody(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	s, logs := newTestServer(t, Options{ReadTimeout: readTimeout})
	s.Router().POST("/orders", func(c *gin.Context) {
		var v map[string]any
		if !DecodeJSON(c, &v) {
			return
		}
		time.Sleep(3 * readTimeout)
		if err := c.Request.Context().Err(); err != nil {
			t.Errorf("the handler's context ended past ReadTimeout: %v", err)
		}
		c.String(http.StatusCreated, "created")
	})
	addr := serveOnLoopback(t, s)
	res, err := http.Post("http://"+addr+"/orders", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatalf("POST: %v\n%s", err, logs)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusCreated || string(body) != "created" {
		t.Fatalf("status %d, body %q (%v), want 201 created", res.StatusCode, body, err)
	}
}

// serveOnLoopback serves s on a fresh loopback listener until the test ends, and returns its address.
func serveOnLoopback(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}
