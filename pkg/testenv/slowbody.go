package testenv

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// ServeLoopback runs serve (a server.Server's Serve, say) on a fresh loopback
// listener until the test ends, and returns the listener's address.
func ServeLoopback(t testing.TB, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// SlowBody sends head (a request's head and the start of its body) to addr,
// then the rest of a body of total bytes one space every 10 ms, as a client
// holding a connection open does, and returns the answer's status and how
// many body bytes were sent when it came (total, or more, means the server
// waited for the whole body). start is how many body bytes head holds.
func SlowBody(t testing.TB, addr, head string, start, total int) (status, sent int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	n.Store(int64(start))
	go func() {
		for n.Load() < int64(total) {
			time.Sleep(10 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				return // the server closed the connection
			}
			n.Add(1)
		}
	}()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	res.Body.Close()
	return res.StatusCode, int(n.Load())
}
