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
// every Tick, not timers. TLS is not served (config validation refuses it).
package evloop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
)

// Tick is how often each loop sweeps its connections for expired deadlines:
// the precision of timeouts.
const Tick = 10 * time.Millisecond

// Options configure a Server.
type Options struct {
	Addr  string // host:port
	Proxy *proxy.Proxy
	// Admin serves AdminPaths (health, readiness, metrics) on a goroutine:
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
	Log              *slog.Logger
}

// Server is the event-loop HTTP/1.1 front end.
type Server struct {
	gnet.BuiltinEventEngine
	o     Options
	admin map[string]bool

	draining atomic.Bool

	mu    sync.Mutex
	eng   gnet.Engine
	up    bool
	loops map[gnet.EventLoop]*loop
	addrs sync.Map // endpoint address → *net.TCPAddr
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
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Server{o: o, admin: map[string]bool{}, loops: map[gnet.EventLoop]*loop{}}
	for _, p := range o.AdminPaths {
		s.admin[p] = true
	}
	return s
}

// Serve listens and serves until Stop; one event loop per core, new
// clients to the loop with the fewest connections.
func (s *Server) Serve() error {
	err := gnet.Run(s, "tcp://"+s.o.Addr, gnet.WithMulticore(true), gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithLogger(gnetLogger{s.o.Log}))
	if err != nil {
		return fmt.Errorf("event loop on %s: %w", s.o.Addr, err)
	}
	return nil
}

// Stop drains, then closes the listener and every connection. While it
// drains, answers carry Connection: close and requests in flight finish
// (until ctx ends); clients keep being served, as readiness already says
// the gateway is going.
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
	return eng.Stop(ctx)
}

// inflight counts requests being served on every loop.
func (s *Server) inflight() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, l := range s.loops {
		n += l.busy.Load()
	}
	return n
}

// OnBoot records the engine for Stop.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.mu.Lock()
	s.eng, s.up = eng, true
	s.mu.Unlock()
	return gnet.None
}

// OnTick runs on gnet's ticker goroutine: it queues a sweep on every loop.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	s.mu.Lock()
	for el, l := range s.loops {
		_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.sweep(time.Now())
			return nil
		}))
	}
	s.mu.Unlock()
	return Tick, gnet.None
}

func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = &loop{s: s, p: s.o.Proxy, el: el, clients: map[*client]struct{}{}, pools: map[string]*pool{}}
		l.br = bufio.NewReaderSize(&l.rd, s.o.MaxHeaderBytes)
		l.now = time.Now().UnixNano()
		l.bw = bufio.NewWriterSize(&l.out, 4<<10)
		s.loops[el] = l
	}
	return l
}

func (s *Server) tcpAddr(addr string) (*net.TCPAddr, error) {
	if a, ok := s.addrs.Load(addr); ok {
		return a.(*net.TCPAddr), nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		// A host name: resolved once, off the hot path (first connection).
		ta, rerr := net.ResolveTCPAddr("tcp", addr)
		if rerr != nil {
			return nil, fmt.Errorf("upstream address %q: %w", addr, rerr)
		}
		s.addrs.Store(addr, ta)
		return ta, nil
	}
	ta := net.TCPAddrFromAddrPort(ap)
	s.addrs.Store(addr, ta)
	return ta, nil
}

// OnOpen: a client accepted, or an upstream connection this server dialled.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if uc, ok := c.Context().(*upconn); ok {
		uc.c = c
		uc.l.ready(uc)
		return nil, gnet.None
	}
	l := s.loopOf(c.EventLoop())
	cl := &client{c: c, l: l, active: l.now}
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
		x.gone = true
		if !x.busy {
			delete(x.l.clients, x)
		}
	}
	return gnet.None
}

// OnTraffic: bytes from a client or an upstream.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *client:
		if x.lingerSince != 0 {
			_, _ = c.Discard(c.InboundBuffered())
			return gnet.None
		}
		if x.busy && c.InboundBuffered() > x.l.s.o.MaxHeaderBytes+x.l.s.o.MaxBodyBytes {
			return gnet.Close // a pipelining client far ahead of its answers
		}
		x.l.serve(x)
		return gnet.None
	case *upconn:
		return x.l.answer(x)
	}
	return gnet.None
}

// loop is one event loop's state, touched only on that loop.
type loop struct {
	s       *Server
	p       *proxy.Proxy
	el      gnet.EventLoop
	clients map[*client]struct{}
	pools   map[string]*pool // by endpoint address
	rd      bytes.Reader
	br      *bufio.Reader
	out     bytes.Buffer
	bw      *bufio.Writer
	busy    atomic.Int64 // clients being served; written on the loop, read by Stop
	// now is the loop's clock for the timeouts the sweep enforces (read,
	// idle, upstream idle), set by each sweep: they need no more precision
	// than a Tick, and three clock reads per request showed in the profile.
	now int64
}

type client struct {
	c    gnet.Conn
	l    *loop
	peer netip.Addr
	req  fasthttp.Request
	resp fasthttp.Response
	x    *proxy.Exchange // the request being proxied
	busy bool            // a request is being served; later ones wait in the buffer
	// close after this answer (Connection: close, HTTP/1.0, bad input)
	close, closing, gone bool
	continued            bool  // 100 Continue sent for the request being read
	http10               bool  // the request being served is HTTP/1.0
	linger               bool  // close by lingering (reject)
	lingerSince          int64 // lingering since (unix ns), 0: not
	need                 int   // bytes the request being read needs before a parse can succeed
	started              int64 // first byte of the request being read arrived (unix ns), 0: none
	active               int64 // last answer written or connection opened
	stalled              int64 // since when an answer sits unwritten, 0: none
	deadline             int64 // of the upstream attempt in flight, 0: none
	up                   *upconn
	waitOn               *pool  // queued for a connection of this pool
	pend                 []byte // the serialised request while queued
}

// pool is one loop's keep-alive connections to one endpoint.
type pool struct {
	addr    *net.TCPAddr
	idle    []*upconn
	waiting []*client
	open    int // connections open or being dialled
}

type upconn struct {
	c    gnet.Conn
	l    *loop
	p    *pool
	cl   *client // whose request is in flight, if any
	used int64   // last returned to idle
	need int     // at least this many bytes before the answer can be complete
}

// needMore says a parse error only means the message is not complete yet.
func needMore(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// serve reads and starts requests from cl's buffer while it is not busy.
func (l *loop) serve(cl *client) {
	for !cl.busy && !cl.closing && !cl.gone {
		if cl.c.InboundBuffered() < cl.need {
			return // a body still arriving: no need to parse again yet
		}
		buf, _ := cl.c.Peek(-1)
		if len(buf) == 0 {
			cl.started = 0
			return
		}
		if cl.started == 0 {
			cl.started = l.now
		}
		cl.req.Reset()
		l.rd.Reset(buf)
		l.br.Reset(&l.rd)
		err := cl.req.Header.Read(l.br)
		if err == nil {
			if n := cl.req.Header.ContentLength(); n > 0 && n <= l.s.o.MaxBodyBytes {
				cl.need = len(buf) - l.rd.Len() - l.br.Buffered() + n
			}
			if !cl.continued && cl.req.MayContinue() {
				// The client waits for this before sending the body.
				cl.continued = true
				_, _ = cl.c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
			}
			err = cl.req.ContinueReadBody(l.br, l.s.o.MaxBodyBytes)
		}
		if err != nil {
			if needMore(err) {
				return
			}
			l.reject(cl, err)
			return
		}
		_, _ = cl.c.Discard(len(buf) - l.rd.Len() - l.br.Buffered())
		cl.started, cl.continued, cl.busy, cl.need = 0, false, true, 0
		l.busy.Add(1)
		h := &cl.req.Header
		cl.http10 = !h.IsHTTP11()
		cl.close = h.ConnectionClose() || (cl.http10 && !bytes.EqualFold(h.Peek("Connection"), []byte("keep-alive")))
		cl.resp.Reset()
		cl.resp.Header.SetNoDefaultContentType(true)
		// The path without parsing the URI: a parsed URI would be
		// re-serialised (normalised) when the request is written upstream.
		path := h.RequestURI()
		if i := bytes.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if l.s.admin[string(path)] && l.s.o.Admin != nil {
			l.adminCall(cl)
			return
		}
		cl.x = proxy.NewExchange(&cl.req, &cl.resp, cl.peer, nil)
		l.step(cl, l.p.Begin(cl.x, false))
	}
}

// reject answers a request that could not be read and closes.
func (l *loop) reject(cl *client, err error) {
	cl.resp.Reset()
	proxy.Reject(&cl.req, &cl.resp, err)
	cl.close, cl.linger = true, true
	l.reply(cl)
}

// Linger is how long a client that was cut off mid-request (413, 431, 408,
// 400) may keep sending before the connection is closed. Closing at once,
// with its unread bytes still arriving, makes the kernel reset the
// connection, and the client may lose the answer before reading it (nginx
// calls this lingering close).
const Linger = time.Second

// step carries out what the chain asked for.
func (l *loop) step(cl *client, s proxy.Step) {
	switch s {
	case proxy.Done:
		l.p.Finish(cl.x)
		cl.x.Release()
		cl.x = nil
		l.reply(cl)
	case proxy.Send:
		l.send(cl)
	case proxy.Blocked:
		x := cl.x
		go func() {
			s := l.p.Begin(x, true)
			l.onLoop(func() { l.advance(cl, s) })
		}()
	}
}

// advance is step for events that arrive outside serve: afterwards the
// client's next buffered request, if any, is started.
func (l *loop) advance(cl *client, s proxy.Step) {
	l.step(cl, s)
	if !cl.busy {
		l.serve(cl)
	}
}

// onLoop runs f on l's loop. If the engine is stopping f never runs; the
// connections are being closed anyway.
func (l *loop) onLoop(f func()) {
	_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f()
		return nil
	}))
}

// adminCall serves an admin path with the fasthttp handler on a goroutine.
func (l *loop) adminCall(cl *client) {
	remote := cl.c.RemoteAddr()
	go func() {
		var rc fasthttp.RequestCtx
		rc.Init(&cl.req, remote, nil)
		l.s.o.Admin(&rc)
		l.onLoop(func() {
			rc.Response.CopyTo(&cl.resp)
			l.reply(cl)
			l.serve(cl)
		})
	}()
}

// reply writes cl.resp and makes cl ready for its next request.
func (l *loop) reply(cl *client) {
	if cl.busy {
		cl.busy = false
		l.busy.Add(-1)
	}
	cl.active = l.now
	if cl.gone {
		delete(l.clients, cl)
		return
	}
	if l.s.draining.Load() {
		cl.close = true
	}
	switch {
	case cl.close:
		cl.resp.SetConnectionClose()
	case cl.http10: // an HTTP/1.0 client keeps the connection only when told
		cl.resp.Header.Set("Connection", "keep-alive")
	}
	cl.resp.SkipBody = cl.req.Header.IsHead()
	l.out.Reset()
	if err := cl.resp.Write(l.bw); err == nil {
		_ = l.bw.Flush()
		_, _ = cl.c.Write(l.out.Bytes())
	} else {
		l.bw.Reset(&l.out)
		cl.close = true
	}
	if cl.close {
		cl.closing = true
		if cl.linger {
			cl.lingerSince = cl.active // the sweep closes it, or the client does
			return
		}
		_ = cl.c.Close()
	}
}

// send writes the request to cl.x.Endpoint over an idle connection, or
// queues it for one.
func (l *loop) send(cl *client) {
	x := cl.x
	pl, err := l.pool(x.Endpoint.Addr)
	if err == nil {
		if len(x.Req.Header.Host()) == 0 { // HTTP/1.0 clients may send none
			x.Req.Header.SetHost(x.Endpoint.Addr)
		}
		l.out.Reset()
		if err = x.Req.Write(l.bw); err == nil {
			err = l.bw.Flush()
		} else {
			l.bw.Reset(&l.out)
		}
	}
	if err != nil {
		l.advance(cl, l.p.Received(x, fmt.Errorf("upstream request: %w", err)))
		return
	}
	cl.deadline = x.Deadline.UnixNano()
	if n := len(pl.idle); n > 0 {
		uc := pl.idle[n-1]
		pl.idle = pl.idle[:n-1]
		uc.cl, cl.up = cl, uc
		_, _ = uc.c.Write(l.out.Bytes())
		return
	}
	cl.pend = append(cl.pend[:0], l.out.Bytes()...)
	cl.waitOn = pl
	pl.waiting = append(pl.waiting, cl)
	if pl.open < l.s.o.MaxConns {
		l.dial(pl)
	}
}

func (l *loop) pool(addr string) (*pool, error) {
	if pl := l.pools[addr]; pl != nil {
		return pl, nil
	}
	ta, err := l.s.tcpAddr(addr)
	if err != nil {
		return nil, err
	}
	pl := &pool{addr: ta}
	l.pools[addr] = pl
	return pl, nil
}

// dial opens a connection for pl on this loop; OnOpen (ready) or a dial
// error (dialFailed) follows.
func (l *loop) dial(pl *pool) {
	pl.open++
	uc := &upconn{l: l, p: pl}
	ch, err := l.el.Register(gnet.NewContext(context.Background(), uc), pl.addr)
	if err != nil {
		l.dialFailed(pl, err)
		return
	}
	go func() {
		if r := <-ch; r.Err != nil {
			l.onLoop(func() { l.dialFailed(pl, r.Err) })
		}
	}()
}

// dialFailed fails a queued request (all of them when no dial is left).
func (l *loop) dialFailed(pl *pool, err error) {
	pl.open--
	for len(pl.waiting) > 0 {
		cl := pl.waiting[0]
		pl.waiting = pl.waiting[1:]
		cl.waitOn = nil
		l.attempted(cl, fmt.Errorf("dial %s: %w", pl.addr, err))
		if pl.open > 0 {
			return
		}
	}
}

// ready puts a connection to work: the first queued request, else idle.
func (l *loop) ready(uc *upconn) {
	pl := uc.p
	if len(pl.waiting) == 0 {
		uc.used = l.now
		pl.idle = append(pl.idle, uc)
		return
	}
	cl := pl.waiting[0]
	pl.waiting = pl.waiting[1:]
	cl.waitOn, cl.up, uc.cl = nil, uc, cl
	_, _ = uc.c.Write(cl.pend)
}

// attempted ends cl's upstream attempt: err nil means cl.resp holds the
// answer.
func (l *loop) attempted(cl *client, err error) {
	cl.deadline, cl.up = 0, nil
	l.advance(cl, l.p.Received(cl.x, err))
}

// answer reads an upstream response.
func (l *loop) answer(uc *upconn) gnet.Action {
	cl := uc.cl
	if cl == nil { // nobody asked: a late answer after a timeout, or garbage
		return gnet.Close
	}
	if uc.c.InboundBuffered() < uc.need {
		return gnet.None
	}
	buf, _ := uc.c.Peek(-1)
	cl.resp.Reset()
	cl.resp.Header.SetNoDefaultContentType(true)
	cl.resp.SkipBody = cl.req.Header.IsHead()
	l.rd.Reset(buf)
	l.br.Reset(&l.rd)
	err := cl.resp.ReadLimitBody(l.br, l.s.o.MaxResponseBytes)
	if err != nil && needMore(err) {
		// Headers in and a length known: wait for all of it before
		// parsing again (a large body arrives in many reads).
		if n := cl.resp.Header.ContentLength(); n > 0 && n <= l.s.o.MaxResponseBytes && cl.resp.Header.StatusCode() > 0 {
			uc.need = n
		}
		return gnet.None
	}
	uc.cl, uc.need = nil, 0
	if err != nil {
		cl.resp.Reset()
		l.attempted(cl, fmt.Errorf("upstream answer: %w", err))
		return gnet.Close
	}
	n := len(buf) - l.rd.Len() - l.br.Buffered()
	_, _ = uc.c.Discard(n)
	keep := !cl.resp.ConnectionClose() && n == len(buf)
	if keep {
		l.ready(uc)
	}
	l.attempted(cl, nil)
	if !keep {
		return gnet.Close
	}
	return gnet.None
}

// upClosed does the pool's bookkeeping and fails a request in flight.
func (l *loop) upClosed(uc *upconn, err error) {
	pl := uc.p
	pl.open--
	for i, x := range pl.idle {
		if x == uc {
			pl.idle = append(pl.idle[:i], pl.idle[i+1:]...)
			break
		}
	}
	if cl := uc.cl; cl != nil {
		uc.cl = nil
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		l.attempted(cl, fmt.Errorf("upstream closed the connection: %w", err))
	}
}

// sweep enforces every timeout of the loop's connections.
func (l *loop) sweep(t time.Time) {
	now := t.UnixNano()
	l.now = now
	o := &l.s.o
	for cl := range l.clients {
		switch {
		case cl.deadline != 0 && now >= cl.deadline:
			if uc := cl.up; uc != nil {
				uc.cl = nil // its answer can no longer be matched: drop the connection
				_ = uc.c.Close()
			}
			if pl := cl.waitOn; pl != nil {
				for i, w := range pl.waiting {
					if w == cl {
						pl.waiting = append(pl.waiting[:i], pl.waiting[i+1:]...)
						break
					}
				}
				cl.waitOn = nil
			}
			l.attempted(cl, fasthttp.ErrTimeout)
		case cl.lingerSince != 0 && !cl.gone && now-cl.lingerSince >= int64(Linger):
			cl.lingerSince = 0
			_ = cl.c.Close()
		case cl.busy || cl.gone || cl.closing:
		case cl.started != 0 && o.ReadTimeout > 0 && now-cl.started >= int64(o.ReadTimeout):
			l.reject(cl, os.ErrDeadlineExceeded)
		case cl.started == 0 && o.IdleTimeout > 0 && now-cl.active >= int64(o.IdleTimeout):
			cl.closing = true
			_ = cl.c.Close()
		}
		if cl.gone || cl.closing || o.WriteTimeout <= 0 {
			continue
		}
		switch {
		case cl.c.OutboundBuffered() == 0:
			cl.stalled = 0
		case cl.stalled == 0:
			cl.stalled = now
		case now-cl.stalled >= int64(o.WriteTimeout):
			cl.closing = true
			_ = cl.c.Close()
		}
	}
	for _, pl := range l.pools {
		keep := pl.idle[:0]
		for _, uc := range pl.idle {
			if now-uc.used >= int64(o.UpstreamIdle) {
				_ = uc.c.Close() // out of idle at once: the close happens later
			} else {
				keep = append(keep, uc)
			}
		}
		clear(pl.idle[len(keep):])
		pl.idle = keep
	}
}

// gnetLogger sends gnet's messages to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.log(slog.LevelDebug, f, a) }
func (g gnetLogger) Infof(f string, a ...any)  { g.log(slog.LevelDebug, f, a) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.log(slog.LevelWarn, f, a) }
func (g gnetLogger) Errorf(f string, a ...any) { g.log(slog.LevelError, f, a) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.log(slog.LevelError, f, a) }

func (g gnetLogger) log(level slog.Level, f string, a []any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "gnet")
	}
}
