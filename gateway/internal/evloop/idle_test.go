package evloop

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// countingLoop stands in for a gnet event loop: Execute runs the sweep at
// once, on the test's goroutine, and counts the wake-ups.
type countingLoop struct {
	gnet.EventLoop
	woken int
}

func (e *countingLoop) Execute(ctx context.Context, r gnet.Runnable) error {
	e.woken++
	return r.Run(ctx)
}

// fakeConn is what OnOpen and OnClose use of a client's connection.
type fakeConn struct {
	gnet.Conn
	el  gnet.EventLoop
	ctx any
}

func (c *fakeConn) EventLoop() gnet.EventLoop { return c.el }
func (c *fakeConn) Context() any              { return c.ctx }
func (c *fakeConn) SetContext(x any)          { c.ctx = x }
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

// An idle gateway's loops must sleep: a loop left without connections is
// not woken by the ticker, one with a client still is, and a client
// accepted on a quiet loop gets a fresh clock and its sweep at the next tick.
func TestOnTickLeavesQuietLoopsAsleep(t *testing.T) {
	s := New(Options{})
	busy, idle := &countingLoop{}, &countingLoop{}
	s.OnOpen(&fakeConn{el: busy})
	gone := &fakeConn{el: idle}
	s.OnOpen(gone)
	s.OnClose(gone, nil)

	// The first tick marks the sweeps due; the second wakes both loops,
	// as neither has swept since: the idle one learns it is empty.
	s.OnTick()
	if next, _ := s.OnTick(); next != Tick {
		t.Fatalf("with a client on a loop the next tick is in %v; want %v", next, Tick)
	}
	if busy.woken != 1 || idle.woken != 1 {
		t.Fatalf("after two ticks: busy loop woken %d times, idle loop %d; want 1 and 1", busy.woken, idle.woken)
	}
	for range 4 {
		s.OnTick()
	}
	if busy.woken != 3 || idle.woken != 1 {
		t.Fatalf("after six ticks: busy loop woken %d times, idle loop %d; want 3 and 1", busy.woken, idle.woken)
	}

	// The busy loop's client leaves: once that loop has swept, every loop
	// is quiet and the ticker slows down.
	s.OnClose(s.loopOf(busy).anyClient().c, nil)
	s.OnTick() // due
	s.OnTick() // swept, found empty
	if next, _ := s.OnTick(); next != quietTick {
		t.Fatalf("with every loop quiet the next tick is in %v; want %v", next, quietTick)
	}
	select {
	case <-s.kick: // the first clients' kick, unread as no ticker runs here
	default:
	}

	l := s.loopOf(idle)
	l.now = 1 // what a loop asleep for long has: its last sweep's clock
	before := time.Now().UnixNano()
	c := &fakeConn{el: idle}
	s.OnOpen(c)
	if cl := c.ctx.(*client); cl.active < before {
		t.Fatalf("client accepted on a quiet loop is active since %d, before its accept (%d): its idle timeout would fire at the first sweep", cl.active, before)
	}
	select {
	case <-s.kick:
	default:
		t.Fatal("a client accepted on a quiet loop did not kick the ticker: its timeouts would wait for the slow tick")
	}
	if next, _ := s.OnTick(); next != Tick || idle.woken != 2 {
		t.Fatalf("after a client arrived and a tick passed: loop woken %d times, next tick in %v; want 2 and %v", idle.woken, next, Tick)
	}
}

// anyClient is one of the loop's clients, nil if none.
func (l *loop) anyClient() *client {
	for cl := range l.clients {
		return cl
	}
	return nil
}
