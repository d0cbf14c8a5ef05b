package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// A caller that connected just before the stop and sends its request a
// moment after it began is served: net/http's Shutdown alone closed such a
// connection unanswered (the client saw EOF and lost its POST).
func TestStopServesAConnectionAcceptedJustBefore(t *testing.T) {
	s, logs := newTestServer(t, Options{ShutdownTimeout: 10 * time.Second})
	s.Router().POST("/orders", func(c *gin.Context) { c.Status(http.StatusCreated) })
	ln, conn, stop, done := serveSilentConnection(t, s)
	stop()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})

	if _, err := conn.Write([]byte("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("request sent after the stop began: %v (want 201)\n%s", err, logs)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Errorf("status %d, want 201", res.StatusCode)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if strings.Contains(logs.String(), "shutdown step failed") {
		t.Errorf("a step failed:\n%s", logs)
	}
}

// serveSilentConnection serves s on a fresh listener and opens a connection to it that has sent nothing yet; stop
// begins the shutdown, done receives Serve's result.
func serveSilentConnection(t *testing.T, s *Server) (ln net.Listener, conn net.Conn, stop func(), done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	conn, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	waitFor(t, "the connection to be accepted", func() bool { return s.fresh.n.Load() == 1 })
	return ln, conn, stop, served
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A connection silent since newConnGrace is not waited for: net/http counts
// it idle by then and its Shutdown closes it at once.
func TestWaitingIgnoresAnOldSilentConnection(t *testing.T) {
	var f freshConns
	old, young := &net.TCPConn{}, &net.TCPConn{}
	f.track(old, http.StateNew)
	f.track(young, http.StateNew)
	f.m[old] = time.Now().Add(-newConnGrace)
	if !f.waiting(newConnGrace) {
		t.Fatal("a connection accepted just now is not waited for")
	}
	f.track(young, http.StateActive)
	if f.waiting(newConnGrace) {
		t.Error("waiting for a connection silent since newConnGrace")
	}
	f.track(old, http.StateClosed)
	if n := f.n.Load(); n != 0 {
		t.Errorf("%d fresh connections left, want 0", n)
	}
}

// A connection that never sends a request (a preconnect, a TCP probe) is not an in-flight request: with a
// ShutdownTimeout under net/http's five seconds, waiting for it used the whole drain, and the stop then reported
// "in-flight requests cut off" (Run's error, the exit status) though no request was cut off.
func TestShortDrainIsCleanWithASilentConnection(t *testing.T) {
	s, logs := newTestServer(t, Options{ShutdownTimeout: 300 * time.Millisecond})
	_, _, stop, done := serveSilentConnection(t, s)
	stop()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if strings.Contains(logs.String(), "shutdown step failed") {
		t.Errorf("a step failed:\n%s", logs)
	}
}
