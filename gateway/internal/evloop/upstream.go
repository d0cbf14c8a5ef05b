package evloop

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/panjf2000/gnet/v2"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
)

// pool is one loop's keep-alive connections to one endpoint.
type pool struct {
	// addr is the endpoint's address as discovery has it, host name or
	// IP: a name is resolved by each dial, off the loop (see dial).
	addr    string
	idle    []*upconn
	waiting []*client
	open    int  // connections open or being dialled
	left    bool // the endpoint left discovery: no connection goes back to idle
}

type upconn struct {
	c    gnet.Conn
	l    *loop
	p    *pool
	cl   *client // whose request is in flight, if any
	used int64   // last returned to idle
	need int     // at least this many bytes before the answer can be complete
	// reused: it has carried an answer, so the upstream may close it as a
	// request arrives (its idle timeout); heard: a byte of the answer in
	// flight has arrived. upClosed resends a request lost that way (replay).
	reused, heard bool
	// chunks: the framing of a chunked answer, so far
	chunks chunked
}

// send writes the request to cl.x.Endpoint over an idle connection, or
// queues it for one.
func (l *loop) send(cl *client) {
	x := cl.x
	if cl.gone {
		// It left while Begin ran off the loop (Blocked): the upstream
		// need not start what nobody will read.
		l.advance(cl, l.p.Received(x, proxy.ErrClientGone))
		return
	}
	pl := l.pool(x.Endpoint.Addr)
	if err := l.serialise(x); err != nil {
		l.advance(cl, l.p.Received(x, err))
		return
	}
	cl.deadline, cl.replayed = l.s.at(x.Deadline), false
	if n := len(pl.idle); n > 0 {
		uc := pl.idle[n-1]
		pl.idle = pl.idle[:n-1]
		uc.cl, uc.heard, cl.up = cl, false, uc
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

// serialise writes x's request into l.out.
func (l *loop) serialise(x *proxy.Exchange) error {
	l.out.Reset()
	err := x.Req.Write(l.bw)
	if err == nil {
		err = l.bw.Flush()
	} else {
		l.bw.Reset(&l.out)
	}
	if err != nil {
		return fmt.Errorf("upstream request: %w", err)
	}
	return nil
}

// replay queues cl's request again, first in line, for the connection
// upClosed dials next: the reused connection it went out on was closed by
// the upstream before any byte of an answer (proxy.Replay). A new one,
// not an idle one: those sat idle as long or longer, and the upstream's
// idle timeout is as likely to close them as the request arrives; nor one
// that comes free meanwhile (see ready).
func (l *loop) replay(cl *client, pl *pool) {
	if err := l.serialise(cl.x); err != nil { // the timeout field changed
		l.attempted(cl, err)
		return
	}
	cl.up, cl.replayed, cl.waitOn = nil, true, pl
	cl.pend = append(cl.pend[:0], l.out.Bytes()...)
	pl.waiting = slices.Insert(pl.waiting, 0, cl)
}

func (l *loop) pool(addr string) *pool {
	pl := l.pools[addr]
	if pl == nil {
		pl = &pool{addr: addr}
		l.pools[addr] = pl
	}
	return pl
}

// dial opens a connection for pl on this loop; OnOpen (ready) or a dial
// error (dialFailed) follows. The connection is dialled here, with
// DialTimeout, and then handed to the loop (Enroll): gnet's own Register
// dials without a timeout. A host name (compose registers "order:8082") is
// resolved by this dial, off the loop, as the fasthttp transport's pools
// resolve it again (their DNS cache lasts a minute): it was resolved once,
// on the loop (stalling every connection of it for the lookup), and that
// address kept for good, so an instance that came back at another address
// under the same name was dialled at the old one until the gateway
// restarted. Dials are rare (connections are kept), so the lookup is too.
//
// Once the engine is stopping no dial starts, and those in flight end
// (Server.OnShutdown): the requests waiting fail with proxy.ErrStopping,
// 503 and no evidence against the upstream.
func (l *loop) dial(pl *pool) {
	pl.open++
	uc := &upconn{l: l, p: pl}
	if !l.s.startDial(uc) {
		l.onLoop(func() { l.dialFailed(pl, proxy.ErrStopping) }) // not now: dial's callers go on with pl
		return
	}
	go func() {
		defer l.s.endDial(uc)
		d := net.Dialer{Timeout: l.s.o.DialTimeout}
		nc, err := d.DialContext(l.s.dialCtx, "tcp", pl.addr)
		if err == nil {
			var ch <-chan gnet.RegisteredResult
			// Enroll duplicates the socket and closes nc once registered.
			if ch, err = l.el.Enroll(gnet.NewContext(context.Background(), uc), nc); err != nil {
				_ = nc.Close()
			} else {
				select {
				case r := <-ch:
					err = r.Err
				case <-l.s.abandoned:
					return // the loop never opened it (OnShutdown); the request is answered nowhere, as the loop is gone
				}
			}
		}
		if err != nil {
			if l.s.dialCtx.Err() != nil {
				err = fmt.Errorf("%w: %w", proxy.ErrStopping, err) // ended by OnShutdown, not by the upstream
			}
			l.onLoop(func() { l.dialFailed(pl, err) })
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

// ready puts a connection to work: the first queued request, else idle. A
// connection that has answered before takes no resent request (replay):
// those wait for the connection dialled for them. One that has just
// answered is seldom at the upstream's idle timeout, but an upstream
// shutting down gracefully (Go's Server.Shutdown) closes each connection
// as soon as its answer has left, not always saying so (Connection: close
// goes only with an answer whose head had not left yet): a resend handed
// to it was caught a second time, and failed for good (a 502 for a DELETE).
func (l *loop) ready(uc *upconn) {
	pl := uc.p
	i := 0
	if uc.reused {
		for i < len(pl.waiting) && pl.waiting[i].replayed {
			i++
		}
	}
	if i == len(pl.waiting) {
		if pl.left {
			_ = uc.c.Close()
			return
		}
		uc.used = l.now
		pl.idle = append(pl.idle, uc)
		return
	}
	cl := pl.waiting[i]
	if i == 0 {
		pl.waiting = pl.waiting[1:] // no copy of a long queue
	} else {
		pl.waiting = slices.Delete(pl.waiting, i, i+1)
	}
	cl.waitOn, cl.up, uc.cl, uc.heard = nil, uc, cl, false
	_, _ = uc.c.Write(cl.pend)
}

// cancel ends cl's upstream attempt in flight with err (its deadline
// passed, or the client went away): the connection it went out on is
// closed, since its answer can no longer be matched, and never pooled; the
// upstream's server sees the close (a Go service's request context ends).
// A request still queued for a connection leaves the queue.
func (l *loop) cancel(cl *client, err error) {
	if uc := cl.up; uc != nil {
		uc.cl = nil
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
	l.attempted(cl, err)
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
	uc.heard = true
	if uc.c.InboundBuffered() < uc.need {
		return gnet.None
	}
	buf, _ := uc.c.Peek(-1)
	var (
		end, held  int
		closeAfter bool
		err        error
	)
	following := uc.chunks.start > 0
	if following {
		if buf, held, uc.need, err = uc.chunks.follow(uc.c, buf, l.s.o.MaxResponseBytes, l.s.o.MaxHeaderBytes); err == nil && uc.need > 0 {
			return gnet.None // a chunked body still arriving, all of it held
		}
	}
	if err == nil {
		end, closeAfter, err = upstream.CheckHead(buf)
	}
	if err != nil {
		uc.cl, uc.need, uc.chunks = nil, 0, chunked{}
		l.attempted(cl, fmt.Errorf("upstream answer: %w", err))
		return gnet.Close
	}
	cl.resp.Reset()
	cl.resp.Header.SetNoDefaultContentType(true)
	cl.resp.SkipBody = cl.req.Header.IsHead()
	l.parses++
	l.rd.Reset(buf)
	l.br.Reset(&l.rd)
	err = upstream.ReadAnswer(&cl.resp, l.br, l.s.o.MaxResponseBytes) // trailer fields dropped
	if err == nil && !following && end > 0 && cl.resp.Header.ContentLength() == -1 {
		// Parsed from its first read: if the parser cut it before its
		// trailer section's end (see chunked), it is followed like a
		// chunked answer arriving in pieces.
		if used := len(buf) - l.rd.Len() - l.br.Buffered(); used > end {
			err = trailerEnd(buf[:used])
		}
	}
	if err != nil && needMore(err) {
		// Headers in and a length known: wait for all of it before
		// parsing again (a large body arrives in many reads).
		if n := cl.resp.Header.ContentLength(); n > 0 && n <= l.s.o.MaxResponseBytes && cl.resp.Header.StatusCode() > 0 {
			uc.need = n
		} else if n == -1 && end > 0 {
			// Chunked, and its head (after any 100 Continue) ends at end:
			// held and followed from now on, parsed again only when its
			// last chunk could be in. Every byte in is this answer's.
			uc.chunks.start = end
			if !following {
				buf, held = uc.chunks.hold(buf)
			}
		}
		if uc.chunks.start > 0 {
			_, _ = uc.c.Discard(len(buf) - held)
		}
		return gnet.None
	}
	uc.cl, uc.need, uc.chunks = nil, 0, chunked{}
	if err != nil {
		cl.resp.Reset()
		l.attempted(cl, fmt.Errorf("upstream answer: %w", err))
		return gnet.Close
	}
	n := len(buf) - l.rd.Len() - l.br.Buffered()
	_, _ = uc.c.Discard(n - held)
	// After an interim answer (1xx, a 502 for the chain) the final one
	// is still to come: handed to the next request, it would be that
	// client's answer. One framed by both a coding and a length may have
	// been framed otherwise by another hop (upstream.CheckHead).
	keep := !cl.resp.ConnectionClose() && n == len(buf) && cl.resp.StatusCode() >= 200 && !closeAfter
	if keep {
		uc.reused = true
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
		switch {
		case uc.reused && !uc.heard && !cl.replayed && l.p.Replay(cl.x):
			// Most often the upstream's idle timeout, firing as the
			// request arrived: sent again, once, on a new connection.
			l.replay(cl, pl)
		default:
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			l.attempted(cl, fmt.Errorf("upstream closed the connection: %w", err))
		}
	}
	if len(pl.waiting) > 0 && pl.open < l.s.o.MaxConns {
		// Requests wait only when every connection was busy (or one was
		// lost and is resent); one fewer now, and none may free up, so
		// they need one dialled.
		l.dial(pl)
	}
}
