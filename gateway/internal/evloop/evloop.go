// Package evloop is the gateway's event-loop transport
// (GATEWAY_TRANSPORT=loop). gnet runs one event loop per core; a loop owns
// its client connections and its own keep-alive connections to each
// upstream endpoint, reads a socket only when epoll reports it readable, and
// moves a request from client to upstream and its answer back to the client
// within loop callbacks: no goroutine per connection, no park and wake-up per
// request, no timer per request. The chain itself is proxy's (Begin,
// Received, Finish), the same code the fasthttp transport runs.
//
// Why not the fasthttp server: bench/README.md ("Third pass") measured its
// goroutine-per-connection model (two parks and wake-ups per request, five
// deadline timers, clock reads) as most of the gap to nginx; a bare gnet
// proxy with the same parser (bench/loopproxy) spent less CPU per request
// than nginx. Why gnet: it is a maintained epoll loop with per-connection
// buffers and cross-goroutine hand-back (Execute), which is what this needs.
//
// What may block never runs on a loop: when a limit lease must be refilled
// from Redis or a token is not in the verified-token cache, the request is
// handed to a goroutine (proxy.Blocked) and resumed on its loop through
// EventLoop.Execute. Timeouts (route deadline → 504, read timeout → 408 and
// close, idle and write timeouts) are a sweep over the loop's connections
// every Tick, not timers; a loop with only idle connections sleeps until
// the nearest of their deadlines. TLS is not served (config validation refuses it).
package evloop

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
)

// Tick is how often each loop sweeps its connections for expired deadlines
// while a request is in flight: the precision of timeouts. A loop with
// traffic sweeps at its first event after a Tick; one without is woken for
// it after a second Tick, so a timeout fires one to two Ticks late. A loop
// whose connections are all idle is instead woken at its nearest deadline
// (OnTick), a Tick late at most.
const Tick = 10 * time.Millisecond

// quietTick is the ticker's period while every loop is quiet (no
// connection): nothing is due, and the accept that ends it restarts the
// ticker at once (kick), so it delays no timeout.
const quietTick = time.Second

// Options configure a Server.
type Options struct {
	Addr string // host:port
	// Loops is how many event loops serve; 0 leaves it to gnet, which runs
	// one per CPU runtime.NumCPU counts: the CPUs the process's affinity
	// allows, not a container's CPU limit (a cgroup quota, which GOMAXPROCS
	// follows and NumCPU does not). In a container limited to 1 CPU on a
	// 16-CPU node, 0 is 16 loops on the two threads GOMAXPROCS
	// gives: set it to the limit there (deploy/k8s sets GATEWAY_EVENT_LOOPS
	// from limits.cpu). Fewer loops than CPUs leave cores to whatever
	// shares the machine (on a 2-core box: the upstreams, the load
	// generator).
	Loops int
	Proxy *proxy.Proxy
	// Admin serves AdminPaths (health, readiness) on a goroutine:
	// they are rare and may block.
	Admin      fasthttp.RequestHandler
	AdminPaths []string
	// MaxBodyBytes: larger request bodies are answered 413 (also chunked).
	MaxBodyBytes int
	// MaxHeaderBytes caps the request line and headers (431 above).
	// Default 16 KiB.
	MaxHeaderBytes int
	// ReadTimeout: a request (headers and body) must arrive within it from
	// its first byte, or the client gets 408 and is closed.
	ReadTimeout time.Duration
	// WriteTimeout: a client that leaves an answer unread for this long is
	// closed.
	WriteTimeout time.Duration
	// IdleTimeout closes client keep-alive connections idle this long.
	IdleTimeout time.Duration
	// UpstreamIdle closes upstream connections unused this long; keep it
	// below the upstreams' own idle timeout. Default 30s.
	UpstreamIdle time.Duration
	// MaxConns caps connections per upstream endpoint per loop. Default 1024.
	MaxConns int
	// MaxResponseBytes caps an upstream answer (502 above). Default 16 MiB.
	MaxResponseBytes int
	// Linger bounds how long a client cut off mid-request may keep sending
	// after its answer and FIN (see client.go's Linger). Default Linger.
	Linger time.Duration
	// DialTimeout bounds a connection attempt to an upstream; the
	// requests waiting for it fail at their own deadline regardless, but
	// a dial left to the kernel's SYN retries would count against MaxConns
	// for minutes. Default 3s, as fasthttp's.
	DialTimeout time.Duration
	// Endpoints, when set, says which upstream addresses discovery still
	// lists: a loop's connections to an address that left are closed
	// within a Tick of noticing (an idle one at once, a busy one when its
	// answer is in), rather than after UpstreamIdle. upstream.Pool
	// satisfies it.
	Endpoints Endpoints
	// HeldBytes bounds the bytes all loops hold for requests not yet
	// handed upstream (budget); 0: unbounded. A request whose arrival
	// would pass it is answered 503 and its connection closed.
	HeldBytes int64
	// MaxClients caps the client connections all loops hold (conns.go);
	// 0: no cap. One over it is answered 503 and closed at once.
	MaxClients int
	// Meter publishes the budget's gauge and counter while Serve runs;
	// default the global provider.
	Meter metric.MeterProvider
	Log   *slog.Logger
	// dialWait bounds how long the engine's shutdown waits for the
	// upstream dials in flight (OnShutdown); default DialTimeout + 1s.
	// Unexported: only tests shorten it.
	dialWait time.Duration
}

// Endpoints is the set of upstream addresses in use. Version changes
// whenever the set does, so a loop asks Has only after a change.
type Endpoints interface {
	Version() uint64
	Has(addr string) bool
}

// Server is the event-loop HTTP/1.1 front end.
type Server struct {
	gnet.BuiltinEventEngine
	o     Options
	admin map[string]bool
	// base is the origin of the loops' clock (clock, at): their times are
	// nanoseconds since it on the monotonic clock, which no step of the
	// wall clock moves. In Unix nanoseconds, an NTP step or a VM's resume
	// an hour forward timed out every request in flight at the next sweep
	// (and closed every idle connection), and one back gave them the hour.
	// It is a second before New, so that no reading is 0, which the
	// clients' times (started, lingerSince, deadline) take for none.
	base time.Time

	draining atomic.Bool
	budget   budget
	// conns counts the client connections open (admit, OnClose), and
	// connsRefused those refused over MaxClients; fullAnswer is their
	// answer.
	conns        atomic.Int64
	connsRefused proxy.Refusals
	fullAnswer   []byte

	mu  sync.Mutex
	eng gnet.Engine
	up  bool
	// shut is set when the engine begins to stop (shutDown): from then
	// nothing is handed to the loops (Alive), as their pollers close.
	shut  bool
	loops map[gnet.EventLoop]*loop
	// kick restarts the ticker when a quiet or idle loop has an event
	// (wakeUp).
	kick chan struct{}
	// endpoints is the Endpoints version OnTick last saw.
	endpoints uint64
	stopTicks context.CancelFunc
	ticksDone chan struct{} // closed when ticks has returned
	// dials holds the upstream dials in flight (dial's goroutines), and
	// dialCtx ends them: OnShutdown cancels it and waits for them, so no
	// dial hands gnet a connection once the loops are told to exit.
	// dialsGone is closed once the engine is stopping and none is left;
	// abandoned, once OnShutdown has stopped waiting (dialWait).
	dials      map[*upconn]struct{}
	dialsGone  chan struct{}
	abandoned  chan struct{}
	dialCtx    context.Context
	cancelDial context.CancelFunc
	served     chan struct{} // closed when Serve returns: the engine is down
	// exiting is set when OnShutdown returns: gnet then tells the loops to
	// exit and, once they have, closes their pollers, and an Execute after
	// that wrote to a closed eventfd, or to whatever took its number
	// (gnet refuses Execute only later). onLoop hands a task only under
	// handMu's read lock with exiting unset; a read lock, so that the
	// goroutines handing tasks (blocked requests resumed, admin answers,
	// dial failures) do not contend with the ticker for mu.
	handMu  sync.RWMutex
	exiting bool
}

// New builds a Server; Serve starts it.
func New(o Options) *Server {
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 16 << 10
	}
	if o.UpstreamIdle == 0 {
		o.UpstreamIdle = 30 * time.Second
	}
	if o.MaxConns == 0 {
		o.MaxConns = 1024
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = 16 << 20
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 3 * time.Second
	}
	if o.Linger == 0 {
		o.Linger = Linger
	}
	if o.dialWait == 0 {
		o.dialWait = o.DialTimeout + time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Meter == nil {
		o.Meter = otel.GetMeterProvider()
	}
	s := &Server{o: o, base: time.Now().Add(-time.Second), admin: map[string]bool{}, loops: map[gnet.EventLoop]*loop{}, kick: make(chan struct{}, 1), served: make(chan struct{}),
		dials: map[*upconn]struct{}{}, dialsGone: make(chan struct{}), abandoned: make(chan struct{})}
	s.dialCtx, s.cancelDial = context.WithCancel(context.Background())
	s.budget.limit = o.HeldBytes
	s.fullAnswer = proxy.ConnsFullAnswer() // the fasthttp transport's bytes too (sockio.Cap)
	for _, p := range o.AdminPaths {
		s.admin[p] = true
	}
	return s
}

// Serve listens and serves until Stop; Options.Loops event loops (one per
// core by default), new clients to the loop with the fewest connections.
// It is called once per Server.
func (s *Server) Serve() error {
	defer close(s.served)
	if unregister, err := s.instrument(s.o.Meter); err != nil {
		otel.Handle(err) // it serves without the budget's metrics
	} else {
		defer unregister()
	}
	// SO_REUSEADDR, as net.Listen sets it: Stop closes clients' connections first, and their TIME_WAIT would keep
	// a restarted gateway off its port for a minute.
	err := gnet.Run(s, "tcp://"+s.o.Addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(s.o.Loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLoadBalancing(gnet.LeastConnections), gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetLogger{s.o.Log}))
	s.shutDown() // if the engine failed to start after OnBoot, OnShutdown did not run
	s.exit()
	if err != nil {
		return fmt.Errorf("event loop on %s: %w", s.o.Addr, err)
	}
	return nil
}

// Stop drains, then closes the listener and every connection. While it
// drains, answers carry Connection: close and requests in flight finish,
// and their answers are written out (until ctx ends); clients keep being
// served, as readiness already says the gateway is going.
func (s *Server) Stop(ctx context.Context) error {
	s.draining.Store(true)
	t := time.NewTicker(Tick)
	defer t.Stop()
	for s.inflight() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	s.mu.Lock()
	eng, up := s.eng, s.up
	s.mu.Unlock()
	if !up {
		return nil
	}
	// Engine.Stop starts the shutdown, then looks every 500 ms whether the
	// engine is down (gnet's shutdownPollInterval), so a shutdown took at
	// least that long. gnet.Run returns the moment the loops, listeners
	// and connections are closed, and Serve with it: its return ends the
	// wait instead (TestStopReturnsWhenServeDoes).
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.served:
			cancel()
		case <-sctx.Done():
		}
	}()
	err := eng.Stop(sctx)
	select {
	case <-s.served:
		return nil
	default:
		return err
	}
}

// inflight counts requests being served on every loop, and answers still
// in a loop's buffer (loop.busy).
func (s *Server) inflight() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, l := range s.loops {
		n += l.busy.Load()
	}
	return n
}

// OnBoot records the engine for Stop and starts the ticker.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.mu.Lock()
	s.eng, s.up = eng, true
	s.stopTicks, s.ticksDone = cancel, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		s.ticks(ctx)
	}()
	return gnet.None
}

// OnShutdown stops the ticker and Alive's tasks before gnet closes the
// loops' pollers, as gnet does with its own: an Execute after that would
// write to a closed (or reused) eventfd. It also ends the upstream dials
// in flight and waits for them, while the loops still run: gnet's Enroll
// queues a connection on its loop and waits until the loop has opened it,
// and a loop that exits first never does, so the dial's goroutine, its
// socket and gnet's duplicate of it stayed for the process's life. gnet
// tells the loops to exit only once OnShutdown returns.
//
// The wait is bounded (Options.dialWait): a loop that died on its own (an
// epoll_wait error, which is also what starts this shutdown) or is stuck
// in a callback never opens what was handed to it, and an unbounded wait
// kept Serve from ever returning. A dial still waiting then is abandoned,
// with a warning: gnet's goroutine, the socket and gnet's duplicate of it
// stay, as they did for every such dial before the wait existed.
//
// From its return no task is handed to a loop (exit, onLoop).
func (s *Server) OnShutdown(gnet.Engine) {
	defer s.exit()
	s.shutDown()
	t := time.NewTimer(s.o.dialWait)
	defer t.Stop()
	select {
	case <-s.dialsGone:
	case <-t.C:
		s.abandonDials()
	}
}

// exit stops onLoop's hand-overs: gnet is about to tell the loops to exit
// and then close their pollers. A task handed after the exit signal would
// never run anyway. It waits for a hand-over under way to finish.
func (s *Server) exit() {
	s.handMu.Lock()
	s.exiting = true
	s.handMu.Unlock()
}

// abandonDials ends OnShutdown's wait for the dials still in flight: their
// goroutines return (dial), and the warning says which upstreams they
// were for.
func (s *Server) abandonDials() {
	s.mu.Lock()
	select {
	case <-s.abandoned:
	default:
		close(s.abandoned)
	}
	addrs := make([]string, 0, len(s.dials))
	for uc := range s.dials {
		addrs = append(addrs, uc.p.addr)
	}
	s.mu.Unlock()
	if len(addrs) == 0 {
		return // the last one ended as the wait did
	}
	slices.Sort(addrs)
	s.o.Log.Warn("upstream dials abandoned at stop: their event loop did not open the connections; each leaves gnet's goroutine and two descriptors",
		"dials", len(addrs), "upstreams", addrs, "waited", s.o.dialWait)
}

// shutDown marks the engine stopping (no dial starts from then on), ends
// the dials in flight, then stops the ticker; more than once is harmless.
func (s *Server) shutDown() {
	s.mu.Lock()
	s.shut = true
	s.dialsLeft()
	s.mu.Unlock()
	s.cancelDial()
	s.stopTicker()
}

// startDial records uc's dial about to start, unless the engine is
// stopping. Recorded under mu, as shut is set, so OnShutdown waits for
// every dial that started.
func (s *Server) startDial(uc *upconn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return false
	}
	s.dials[uc] = struct{}{}
	return true
}

// endDial forgets uc's dial: it connected and its loop opened it, or it
// failed, or it was abandoned.
func (s *Server) endDial(uc *upconn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dials, uc)
	s.dialsLeft()
}

// dialsLeft closes dialsGone once the engine is stopping and no dial is in
// flight; s.mu is held.
func (s *Server) dialsLeft() {
	if !s.shut || len(s.dials) > 0 {
		return
	}
	select {
	case <-s.dialsGone:
	default:
		close(s.dialsGone)
	}
}

// stopTicker stops ticks and waits for it; once is enough, more is harmless.
func (s *Server) stopTicker() {
	s.mu.Lock()
	stop, done := s.stopTicks, s.ticksDone
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// ticks runs OnTick until ctx ends. It replaces gnet's ticker, which
// cannot be cut short: a ticker that waits quietTick while every loop is
// quiet must restart when one accepts a client (kick).
func (s *Server) ticks(ctx context.Context) {
	t := time.NewTimer(Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		d, _ := s.OnTick()
		t.Reset(d)
	}
}

// OnTick runs on the ticker goroutine (ticks): it marks every loop's sweep as
// due, which a loop with traffic runs at its next event (OnTraffic), and
// wakes only a loop whose sweep has been due for a whole Tick, and only
// when the sweep it last handed that loop has run (queued): a wedged loop
// holds one sweep, not one more every Tick. Waking each
// loop every Tick (an eventfd write, a wake-up, a second epoll_wait) cost
// about 35 µs a tick; at half saturation that was 0.4 µs per request.
//
// A quiet loop (no connection at its last sweep) is not woken at all: its
// sweep would find nothing, and waking every loop 50 times a second kept
// an idle gateway at 4 % of a core (README, "Idle cost"). A client it
// accepts later clears quiet in OnOpen, on the loop, before any of that
// client's deadlines exist; its sweep stays due meanwhile, so the first
// tick after the accept wakes the loop: within one Tick, inside the
// documented one to two. While every loop is quiet the next tick is
// quietTick away; OnOpen's kick brings it forward (ticks), after clearing
// quiet, so either this pass saw the loop busy or the kick comes after it.
//
// A loop whose connections are all idle (wake set by its last sweep) is
// not woken before its nearest deadline either: with one idle keep-alive
// client (a readiness prober, a load balancer's pooled connection) every
// loop woke 50 times a second and the ticker 100 times, which kept the
// runtime's sysmon from backing off (README, "Idle cost"). The ticker
// sleeps until the nearest such deadline (at least a Tick, at most
// quietTick), then wakes that loop at once: a timeout fires within a Tick
// of its due time. The loop's next event ends the sleep (wakeUp) and
// kicks the ticker, as OnOpen does, so a request it starts is swept every
// Tick again. A change of Endpoints wakes every loop that is not quiet,
// for dropLeft: the idle connections to an address that left then close
// within quietTick, not within a Tick.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	s.mu.Lock()
	next := quietTick
	now := s.clock()
	var moved bool
	if e := s.o.Endpoints; e != nil {
		v := e.Version()
		moved, s.endpoints = v != s.endpoints, v
	}
	for el, l := range s.loops {
		if l.quiet.Load() {
			l.due.Store(true)
			continue
		}
		w := l.wake.Load()
		if w > now && !moved {
			next = min(next, max(time.Duration(w-now), Tick))
			continue
		}
		next = Tick
		// An idle loop whose deadline has come (or whose endpoints moved)
		// is woken at once; a busy one when its sweep has been due a Tick.
		if !l.due.Swap(true) && w == 0 || l.queued.Swap(true) {
			continue // not yet due a Tick, or its sweep still waits on the loop
		}
		if err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.queued.Store(false)
			l.sweep(time.Now())
			return nil
		})); err != nil {
			l.queued.Store(false)
		}
	}
	s.mu.Unlock()
	return next, gnet.None
}

func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = &loop{s: s, p: s.o.Proxy, el: el, clients: map[*client]struct{}{}, pools: map[string]*pool{}}
		l.br = bufio.NewReaderSize(&l.rd, s.o.MaxHeaderBytes)
		l.now = s.clock()
		l.bw = bufio.NewWriterSize(&l.out, 4<<10)
		l.quiet.Store(true) // no connection yet: OnOpen's first client ends it and kicks the ticker
		s.loops[el] = l
	}
	return l
}

// OnOpen: a client accepted, or an upstream connection this server dialled.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if uc, ok := c.Context().(*upconn); ok {
		if uc.l.wake.Load() != 0 {
			// A dial outlives the request it was for (a 504 at its
			// deadline): the loop may have gone to sleep meanwhile with
			// nothing due, and the connection, idle from now, needs a
			// fresh clock and a sweep to close it at UpstreamIdle.
			uc.l.wakeUp()
		}
		uc.c = c
		uc.l.ready(uc)
		return nil, gnet.None
	}
	if out, a := s.admit(c); a != gnet.None {
		return out, a
	}
	l := s.loopOf(c.EventLoop())
	if l.quiet.Load() || l.wake.Load() != 0 {
		l.wakeUp()
	}
	cl := &client{c: c, l: l, active: l.now}
	if s.o.ReadTimeout > 0 {
		// Its first request is under way from the accept: silent, it gets
		// the read timeout, 408, as on the fasthttp transport, which sets
		// that deadline at the accept. Counted idle, as between two
		// requests of a keep-alive connection, it was held for the idle
		// timeout (60 s by default against 5 s). Without a read timeout
		// the idle timeout still bounds it.
		cl.started = l.now
	}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cl.peer = ta.AddrPort().Addr()
	}
	c.SetContext(cl)
	l.clients[cl] = struct{}{}
	return nil, gnet.None
}

// OnClose: either side's connection ended.
func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *upconn:
		x.l.upClosed(x, err)
	case *client:
		s.conns.Add(-1)
		x.gone = true
		x.chunks = chunked{} // busy, it has none; else nothing reads them again
		x.l.settle(x)        // gone: to 0
		x.l.count(x)
		if x.deadline != 0 {
			// It went away while its request was at the upstream (or
			// queued for a connection): the upstream connection is closed
			// with it, as nginx does by default (proxy_ignore_client_abort
			// off), so that the upstream can stop working for nobody; kept,
			// it held the connection and the upstream's work until the
			// answer or the route timeout.
			x.l.cancel(x, proxy.ErrClientGone)
		}
		if !x.busy {
			delete(x.l.clients, x)
		}
	}
	return gnet.None
}

// OnTraffic: bytes from a client or an upstream; then the sweep, if due.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	l := s.loopOfConn(c)
	if l != nil && l.wake.Load() != 0 {
		l.wakeUp() // before serve reads the loop's clock
	}
	a := s.traffic(c)
	if l != nil && l.due.Load() {
		l.sweep(time.Now())
	}
	return a
}

// clock is now on the loops' clock (base): time.Since of a reading with a
// monotonic part reads only the monotonic clock.
func (s *Server) clock() int64 { return int64(time.Since(s.base)) }

// at is t on the loops' clock (base). A t with a monotonic reading
// (time.Now's, and what Add derives from one, as a request's deadline)
// is placed by it, whatever the wall clock did since base; one without
// (a parsed or rounded time) by its wall part.
func (s *Server) at(t time.Time) int64 { return int64(t.Sub(s.base)) }

// wakeUp ends a quiet loop's or an idle one's sleep (quiet, wake), on the
// loop, at its next event: a client accepted, an upstream connection
// dialled, bytes in. The loop slept through its sweeps, so its clock is
// stale: a new client's idle timeout, a request's read timeout and the
// idle time of the answer it gets (or of the connection dialled) must
// count from now. The kick comes after quiet and wake are cleared, so
// either OnTick saw them cleared or it runs again after the kick; from
// then the loop is swept every Tick until a sweep finds it idle again.
func (l *loop) wakeUp() {
	l.now = l.s.clock()
	l.quiet.Store(false)
	l.wake.Store(0)
	select {
	case l.s.kick <- struct{}{}:
	default: // a kick is pending already
	}
}

// loopOfConn is the loop state behind c's context.
func (s *Server) loopOfConn(c gnet.Conn) *loop {
	switch x := c.Context().(type) {
	case *client:
		return x.l
	case *upconn:
		return x.l
	}
	return nil
}

func (s *Server) traffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *client:
		if x.lingerSince != 0 || x.closeSent || x.busy && x.linger {
			// Lingering, or closing once its answer is out (or in, for
			// a client refused past the budget while busy: hold): what
			// comes is dropped.
			_, _ = c.Discard(c.InboundBuffered())
			x.l.settle(x)
			return gnet.None
		}
		if (x.busy || x.paused) && c.InboundBuffered() > x.l.s.o.MaxHeaderBytes+x.l.s.o.MaxBodyBytes {
			return gnet.Close // a pipelining client far ahead of its answers
		}
		// Charged before serve looks (what gnet read is held already)
		// and after (a followed message moved from gnet's buffer to its
		// own, a request handed on).
		if a := x.l.hold(x); a != gnet.None || x.closing {
			return a
		}
		x.l.serve(x)
		if x.closing {
			x.l.settle(x)
			return gnet.None
		}
		return x.l.hold(x)
	case *upconn:
		return x.l.answer(x)
	}
	return gnet.None
}
