package evloop

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
)

// TestAliveWhenFullNotWhenWedged: with the client cap full, a probe on the
// public port is one client too many and gets 503 gateway-busy (a liveness
// probe there restarted a gateway that was merely full), while Alive still
// answers; a loop stuck in a callback makes Alive fail until it comes back.
func TestAliveWhenFullNotWhenWedged(t *testing.T) {
	addr, s := startServerS(t, proxy.Options{}, Options{Loops: 2, MaxClients: 2, ReadTimeout: time.Minute})
	// A round trip first: the start's probe connection was accepted before
	// it, so once both are closed nothing else is counted.
	if r := roundTrips(t, addr, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]; r.StatusCode() != 200 {
		t.Fatalf("a first client: %d %q", r.StatusCode(), r.Body())
	}
	waitFor(t, "the first clients gone", func() bool { return s.conns.Load() == 0 })
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "the cap full", func() bool { return s.conns.Load() == 2 })

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
	var r fasthttp.Response
	if err := r.Read(bufio.NewReader(c)); err != nil || r.StatusCode() != 503 || !strings.Contains(string(r.Body()), "gateway-busy") {
		t.Fatalf("/healthz on the public port of a full gateway: %d %q %v, want 503 gateway-busy", r.StatusCode(), r.Body(), err)
	}
	if err := alive(s, 5*time.Second); err != nil {
		t.Fatalf("Alive with the cap full: %v, want nil", err)
	}

	// Wedge the loops that have clients: a callback that does not return.
	s.mu.Lock()
	var loops []gnet.EventLoop
	for el := range s.loops {
		loops = append(loops, el)
	}
	s.mu.Unlock()
	if len(loops) == 0 {
		t.Fatal("no loop has served a client")
	}
	release, started := make(chan struct{}), make(chan struct{}, len(loops))
	defer func() {
		select {
		case <-release:
		default:
			close(release) // the server's cleanup must find its loops running
		}
	}()
	for _, el := range loops {
		if err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			started <- struct{}{}
			<-release
			return nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	for range loops {
		<-started
	}
	if err := alive(s, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Alive with every loop wedged: %v, want a deadline error", err)
	}
	close(release)
	if err := alive(s, 5*time.Second); err != nil {
		t.Fatalf("Alive once the loops run again: %v, want nil", err)
	}
}

// TestAliveBeforeServe: a server whose loops have not started is not alive.
func TestAliveBeforeServe(t *testing.T) {
	if err := alive(New(Options{Addr: "127.0.0.1:0"}), time.Second); !errors.Is(err, errNotServing) {
		t.Fatalf("Alive before Serve: %v, want %v", err, errNotServing)
	}
}

func alive(s *Server, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return s.Alive(ctx)
}

// TestAliveHandsNothingOnceShutDown: gnet calls OnShutdown, then closes the
// loops' pollers and their eventfds, and only then refuses Execute; a task
// handed to a loop in between wrote to a closed descriptor, or to whatever
// socket or file had just been given its number. The kubelet probes the
// admin listener, which outlives the loops, through a whole shutdown, so
// Alive must stop handing out tasks when OnShutdown runs, as the ticker
// does. Before, Alive after OnShutdown handed every loop a task (and said
// alive).
func TestAliveHandsNothingOnceShutDown(t *testing.T) {
	addr, s := startServerS(t, proxy.Options{}, Options{Loops: 2})
	if r := roundTrips(t, addr, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]; r.StatusCode() != 200 {
		t.Fatalf("a first client: %d %q", r.StatusCode(), r.Body())
	}
	if err := alive(s, 5*time.Second); err != nil {
		t.Fatalf("Alive while serving: %v, want nil", err)
	}
	s.OnShutdown(gnet.Engine{}) // what gnet calls first when the engine stops
	if err := alive(s, 5*time.Second); !errors.Is(err, errStopped) {
		t.Fatalf("Alive once OnShutdown ran: %v, want %v", err, errStopped)
	}
}
