package service_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadTimeoutIsConfigured: READ_TIMEOUT reaches the server. A sign-up
// whose body comes a byte every 10 ms (5 s in all) is cut off with 408 at
// the configured 200 ms; the server's 30 s default would have read it whole.
func TestReadTimeoutIsConfigured(t *testing.T) {
	h := newHarness(t, map[string]string{"READ_TIMEOUT": "200ms"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.svc.Server.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	const bodyBytes = 500
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := fmt.Sprintf("POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", bodyBytes)
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
		t.Fatalf("no response to the slow body: %v", err)
	}
	res.Body.Close()
	if n := sent.Load(); res.StatusCode != http.StatusRequestTimeout || n >= bodyBytes {
		t.Fatalf("status %d after %d of %d body bytes, want 408 before the body was complete", res.StatusCode, n, bodyBytes)
	}
}
