package evloop

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
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
	el     gnet.EventLoop
	ctx    any
	closed bool
}

func (c *fakeConn) EventLoop() gnet.EventLoop { return c.el }
func (c *fakeConn) Context() any              { return c.ctx }
func (c *fakeConn) SetContext(x any)          { c.ctx = x }
func (c *fakeConn) Close() error              { c.closed = true; return nil }
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

// An idle gateway's loops must sleep: a loop left without connections is
// not woken by the ticker, one with a request in flight still is, and a
// client accepted on a quiet loop gets a fresh clock and its sweep at the
// next tick.
func TestOnTickLeavesQuietLoopsAsleep(t *testing.T) {
	s := New(Options{})
	busy, idle := &countingLoop{}, &countingLoop{}
	inflight := &fakeConn{el: busy}
	s.OnOpen(inflight)
	inflight.ctx.(*client).busy = true
	s.loopOf(busy).busy.Add(1)
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
	inflight.ctx.(*client).busy = false
	s.loopOf(busy).busy.Add(-1)
	s.OnClose(inflight, nil)
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
	before := s.clock()
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

// A loop whose only client is idle is left asleep until the client's idle
// timeout, then woken at once: not every Tick, and not late.
func TestOnTickWakesIdleLoopAtItsDeadline(t *testing.T) {
	const idle = 100 * time.Millisecond
	s := New(Options{IdleTimeout: idle})
	el := &countingLoop{}
	c := &fakeConn{el: el}
	s.OnOpen(c)
	s.OnTick() // due
	s.OnTick() // swept: the idle timeout is the next thing due
	if el.woken != 1 {
		t.Fatalf("loop woken %d times in two ticks after an accept; want 1", el.woken)
	}
	next, _ := s.OnTick()
	if next <= Tick || next > idle || el.woken != 1 {
		t.Fatalf("loop with an idle client: woken %d times, next tick in %v; want 1 and (%v, %v]", el.woken, next, Tick, idle)
	}
	time.Sleep(next)
	s.OnTick()
	if el.woken != 2 || !c.closed {
		t.Fatalf("at the idle timeout: loop woken %d times, client closed %v; want 2 and true", el.woken, c.closed)
	}
}

// sweeps counts the sweeps every loop of s has run.
func (s *Server) sweeps() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, l := range s.loops {
		n += l.sweeps.Load()
	}
	return n
}

// One idle keep-alive client (a readiness prober, a load balancer's pooled
// connection) must not keep the gateway waking every Tick: nothing of it
// is due before its idle timeout, so no sweep should run until then
// (README, "Idle cost"). The idle timeout itself still closes it on time.
func TestIdleKeepAliveClientLetsLoopsSleep(t *testing.T) {
	const idle = 2 * time.Second
	addr, s := startServerS(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 10, ReadTimeout: time.Second, IdleTimeout: idle})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(idle + 5*time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var r fasthttp.Response
	if err := r.Read(br); err != nil || string(r.Body()) != "ok" {
		t.Fatalf("health: %q, %v", r.Body(), err)
	}
	answered := time.Now()

	// A few Ticks for the sweep that finds the request done (and for the
	// loops startServerWith's probe left to find themselves empty).
	time.Sleep(100 * Tick)
	before := s.sweeps()
	time.Sleep(time.Second)
	n := s.sweeps() - before
	t.Logf("%d sweeps in a second with one idle keep-alive client", n)
	if n > 2 {
		t.Errorf("%d sweeps in a second with one idle keep-alive client whose idle timeout is %v away; want at most 2", n, idle)
	}

	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle client: read %v, want EOF (closed at the idle timeout)", err)
	}
	if d := time.Since(answered); d < idle-Tick {
		t.Fatalf("idle client closed %v after its answer; the idle timeout is %v", d, idle)
	}
}

// An upstream connection whose dial was still in flight when the loop last
// swept (its request timed out meanwhile, 504, and its client left) goes
// idle when the dial completes; the loop must sweep it again, and close it
// at UpstreamIdle. The sweep had found nothing due (no client, no idle
// connection) and left the loop asleep with no deadline, and the dial's
// OnOpen did not wake it: the connection stayed open until the upstream
// closed it or another client came.
func TestUpstreamDialledWhileAsleepIsClosedAtUpstreamIdle(t *testing.T) {
	const upIdle = 50 * time.Millisecond
	s := New(Options{UpstreamIdle: upIdle})
	el := &countingLoop{}
	l := s.loopOf(el)
	pl := &pool{open: 1} // a dial in flight, nobody waiting for it any more
	l.pools["10.0.0.1:80"] = pl
	l.sweep(time.Now())
	if l.quiet.Load() {
		t.Fatal("a loop with a dial in flight swept quiet")
	}

	up := &fakeConn{el: el, ctx: &upconn{l: l, p: pl}}
	s.OnOpen(up) // the dial completes
	if len(pl.idle) != 1 {
		t.Fatalf("dialled connection: %d idle in the pool, want 1", len(pl.idle))
	}
	deadline := time.Now().Add(upIdle + 20*Tick)
	for !up.closed && time.Now().Before(deadline) {
		next, _ := s.OnTick()
		time.Sleep(min(next, Tick))
	}
	if !up.closed {
		t.Fatalf("upstream connection idle since its dial still open %v later (UpstreamIdle %v); loop woken %d times",
			upIdle+20*Tick, upIdle, el.woken)
	}
}

// wedgedLoop stands in for a gnet event loop stuck in a callback: it keeps
// the tasks handed to it and runs none until the test does.
type wedgedLoop struct {
	gnet.EventLoop
	tasks []gnet.Runnable
}

func (e *wedgedLoop) Execute(_ context.Context, r gnet.Runnable) error {
	e.tasks = append(e.tasks, r)
	return nil
}

// A wedged loop holds at most one sweep from the ticker: OnTick handed a
// loop with a request in flight a sweep every Tick whether or not the last
// one had run, so a loop stuck in a callback grew its task queue by a
// hundred a second (a thousand ticks here queued 999) until it came back.
func TestOnTickQueuesOneSweepOnAWedgedLoop(t *testing.T) {
	s := New(Options{})
	el := &wedgedLoop{}
	c := &fakeConn{el: el}
	s.OnOpen(c)
	c.ctx.(*client).busy = true
	s.loopOf(el).busy.Add(1)
	for range 1000 {
		s.OnTick()
	}
	if len(el.tasks) != 1 {
		t.Fatalf("a wedged loop with a request in flight was handed %d sweeps in 1000 ticks, want 1", len(el.tasks))
	}
	// Back from its callback, the loop runs the sweep; the next ticks hand
	// it the one after.
	_ = el.tasks[0].Run(context.Background())
	for range 2 {
		s.OnTick()
	}
	if len(el.tasks) != 2 {
		t.Fatalf("after its sweep ran, the loop was handed %d sweeps in all, want 2", len(el.tasks))
	}
}
