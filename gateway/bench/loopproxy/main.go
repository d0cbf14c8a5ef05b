// Command loopproxy measures what an event-loop transport would cost the
// gateway, before anyone rewrites the gateway on one. It is a bare reverse
// proxy in the nginx model: gnet runs one event loop per core, each loop owns
// its client connections and its own keep-alive connections to the upstream,
// a socket is read only when epoll reports it readable, and a request moves
// from client to upstream and back without a goroutine switch. Requests and
// responses are parsed and serialised with fasthttp, as in the gateway.
//
// It is a benchmark target only (run.sh TARGETS=loop): no timeouts, no
// limits, no TLS, no header hygiene beyond Connection, no error answers. The
// gateway's goroutine-per-connection model pays for parks, wake-ups and the
// read(2) that must fail with EAGAIN before each park; the difference between
// this and the gateway's routing-only mode bounds what an event loop can win.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
)

// maxHead bounds a request or response still incomplete in a connection's
// buffer; past it the connection is closed.
const maxHead = 64 << 10

// loop is one event loop's state, touched only from that loop's goroutine.
type loop struct {
	idle    []gnet.Conn // upstream connections with no request in flight
	waiting []*client   // clients whose request waits for a new upstream connection
	rd      *bytes.Reader
	br      *bufio.Reader
	req     fasthttp.Request
	resp    fasthttp.Response
	out     []byte
}

type client struct {
	c    gnet.Conn
	l    *loop
	busy bool   // a request is at the upstream; later ones wait in the buffer
	pend []byte // the serialised request while waiting for a connection
}

type upstream struct {
	l  *loop
	cl *client // the client whose request is in flight, if any
}

type proxy struct {
	gnet.BuiltinEventEngine
	addr  net.Addr
	loops sync.Map // gnet.EventLoop -> *loop
	boot  func(gnet.Engine)
}

func (p *proxy) OnBoot(eng gnet.Engine) gnet.Action {
	if p.boot != nil {
		p.boot(eng)
	}
	return gnet.None
}

func (p *proxy) loopOf(el gnet.EventLoop) *loop {
	if v, ok := p.loops.Load(el); ok {
		return v.(*loop)
	}
	rd := bytes.NewReader(nil)
	v, _ := p.loops.LoadOrStore(el, &loop{rd: rd, br: bufio.NewReaderSize(rd, maxHead)})
	return v.(*loop)
}

func (p *proxy) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	u, ok := c.Context().(*upstream)
	if !ok {
		c.SetContext(&client{c: c, l: p.loopOf(c.EventLoop())})
		return nil, gnet.None
	}
	if len(u.l.waiting) == 0 {
		u.l.idle = append(u.l.idle, c)
		return nil, gnet.None
	}
	u.cl, u.l.waiting = u.l.waiting[0], u.l.waiting[1:]
	_, _ = c.Write(u.cl.pend)
	return nil, gnet.None
}

func (p *proxy) OnClose(c gnet.Conn, _ error) gnet.Action {
	u, ok := c.Context().(*upstream)
	if !ok {
		return gnet.None
	}
	for i, x := range u.l.idle {
		if x == c {
			u.l.idle = append(u.l.idle[:i], u.l.idle[i+1:]...)
			break
		}
	}
	if u.cl != nil {
		_ = u.cl.c.Close()
	}
	return gnet.None
}

func (p *proxy) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *client:
		return p.request(x)
	case *upstream:
		return p.response(c, x)
	}
	return gnet.None
}

// parse reads one message from what c holds into m; ok false means wait for
// more (or, past maxHead, give up).
func (l *loop) parse(c gnet.Conn, read func(*bufio.Reader) error) (ok bool, action gnet.Action) {
	buf, _ := c.Peek(-1)
	if len(buf) == 0 {
		return false, gnet.None
	}
	l.rd.Reset(buf)
	l.br.Reset(l.rd)
	if err := read(l.br); err != nil {
		if len(buf) > maxHead {
			return false, gnet.Close
		}
		return false, gnet.None
	}
	_, _ = c.Discard(len(buf) - l.rd.Len() - l.br.Buffered())
	return true, gnet.None
}

func (p *proxy) request(cl *client) gnet.Action {
	if cl.busy {
		return gnet.None
	}
	l := cl.l
	l.req.Reset()
	ok, action := l.parse(cl.c, l.req.Read)
	if !ok {
		return action
	}
	l.req.Header.Del("Connection")
	l.out = append(l.req.Header.AppendBytes(l.out[:0]), l.req.Body()...)
	cl.busy = true
	if n := len(l.idle); n > 0 {
		uc := l.idle[n-1]
		l.idle = l.idle[:n-1]
		uc.Context().(*upstream).cl = cl
		_, _ = uc.Write(l.out)
		return gnet.None
	}
	cl.pend = append(cl.pend[:0], l.out...)
	l.waiting = append(l.waiting, cl)
	ctx := gnet.NewContext(gnet.NewNetAddrContext(context.Background(), p.addr), &upstream{l: l})
	if _, err := cl.c.EventLoop().Register(ctx, p.addr); err != nil {
		return gnet.Close
	}
	return gnet.None
}

func (p *proxy) response(c gnet.Conn, u *upstream) gnet.Action {
	l := u.l
	l.resp.Reset()
	ok, action := l.parse(c, l.resp.Read)
	if !ok {
		return action
	}
	l.resp.Header.Del("Connection")
	l.out = append(l.resp.Header.AppendBytes(l.out[:0]), l.resp.Body()...)
	cl := u.cl
	u.cl = nil
	l.idle = append(l.idle, c)
	if cl == nil {
		return gnet.None
	}
	_, _ = cl.c.Write(l.out)
	cl.busy = false
	if cl.c.InboundBuffered() > 0 { // a pipelined request waited
		_ = p.request(cl)
	}
	return gnet.None
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18098", "listen address")
	target := flag.String("upstream", "127.0.0.1:18090", "upstream host:port")
	flag.Parse()
	ua, err := net.ResolveTCPAddr("tcp", *target)
	if err != nil {
		slog.Error("upstream address", "error", err.Error())
		os.Exit(2)
	}
	slog.Error("loopproxy stopped", "error", run(&proxy{addr: ua}, *addr))
	os.Exit(1)
}

// run serves on addr until the engine stops: one event loop per core, new
// clients to the least loaded loop.
func run(p *proxy, addr string) error {
	return gnet.Run(p, "tcp://"+addr, gnet.WithMulticore(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLoadBalancing(gnet.LeastConnections))
}
