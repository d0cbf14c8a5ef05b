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

	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// TestReadTimeoutIsConfigured: READ_TIMEOUT reaches the server. No payment
// route reads a body, but net/http reads what a handler left unread before
// it answers (so the connection can serve the next request): a body that
// comes a byte every 10 ms (5 s in all) held the answer until its last byte.
// At the configured 200 ms that read is cut off and the answer goes out,
// long before the body is complete; headers alone keep net/http's fixed 10 s
// bound (pkg/server's ReadHeaderTimeout), whatever READ_TIMEOUT says.
func TestReadTimeoutIsConfigured(t *testing.T) {
	// No telemetry: the server's shutdown would flush the provider the
	// package's other tests share.
	h := newHarnessOptions(t, func(c *config.Config) { c.ReadTimeout = 200 * time.Millisecond },
		func(o *service.Options) { o.Telemetry = nil })
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
	if _, err := fmt.Fprintf(conn, "GET /api/v1/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", h.token("alice"), bodyBytes); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int32
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
	if n := sent.Load(); res.StatusCode != http.StatusOK || n >= bodyBytes {
		t.Fatalf("status %d after %d of %d body bytes, want 200 before the body was complete", res.StatusCode, n, bodyBytes)
	}
}
