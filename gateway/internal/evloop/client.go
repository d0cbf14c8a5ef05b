package evloop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
)

// loop is one event loop's state, touched only on that loop.
type loop struct {
	s       *Server
	p       *proxy.Proxy
	el      gnet.EventLoop
	clients map[*client]struct{}
	pools   map[string]*pool // by endpoint address
	rd      bytes.Reader
	br      *bufio.Reader
	crlf    []byte // a request whose head ends in bare LFs, with CRLFs (crlfHead)
	out     bytes.Buffer
	bw      *bufio.Writer
	// busy counts the clients being served, and those with an answer
	// still in the loop's buffer (count); written on the loop, read by
	// Stop. One counter: a client moves from one to the other without
	// Stop ever seeing it in neither.
	busy atomic.Int64
	// now is the loop's clock for the timeouts the sweep enforces (read,
	// idle, upstream idle), set by each sweep: they need no more precision
	// than a Tick, and three clock reads per request showed in the profile.
	now int64
	// endpoints is the Endpoints version this loop's pools were last
	// checked against.
	endpoints uint64
	// parses counts messages parsed, both ways: a message arriving in
	// many reads must not be parsed at each (TestChunkedParsedOnce).
	parses int
	// due: a sweep is due (set by OnTick, cleared by sweep).
	due atomic.Bool
	// queued: OnTick has handed the loop a sweep that has not run yet
	// (set by OnTick, cleared by that task). A wedged loop runs none of
	// its tasks, so without it every Tick queued one more (100 a second).
	queued atomic.Bool
	// quiet: the last sweep found no client and no upstream connection
	// (open or being dialled), so OnTick leaves the loop asleep. Set by
	// sweep, cleared by OnOpen, both on the loop; upstream connections
	// are only dialled for a client, so a client comes first.
	quiet atomic.Bool
	// wake: the loop's connections are all idle (no request in flight,
	// nothing being written or lingering) and the sweep is not needed
	// before this time (the loop's clock, Server.at), the nearest deadline it enforces (idle,
	// read, linger, upstream idle timeouts); 0: sweep every Tick. Set by
	// sweep, cleared by the next event (wakeUp), both on the loop; read
	// by OnTick, which leaves the loop asleep until then. While it is set
	// the loop's clock (now) is not kept up, so wakeUp refreshes it.
	wake atomic.Int64
	// sweeps counts sweeps run: what an idle loop must not do often
	// (TestIdleKeepAliveClientLetsLoopsSleep).
	sweeps atomic.Int64
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
	lingerSince          int64 // lingering since (Server.at; from its FIN once sent), 0: not
	finned               bool  // lingering, and the answer is out with a FIN behind it
	closeSent            bool  // closing once its last answer is all out (reply; then the sweep closes it)
	counted              bool  // counted in loop.busy for its answer in the buffer (count)
	need                 int   // bytes the request being read needs before a parse can succeed
	started              int64 // first byte of the request being read arrived (Server.at), 0: none
	active               int64 // last answer written or connection opened
	stalled              int64 // since when an answer sits unwritten, 0: none
	deadline             int64 // of the upstream attempt in flight, 0: none
	up                   *upconn
	waitOn               *pool  // queued for a connection of this pool
	replayed             bool   // the attempt in flight was sent again (upstream.go's replay)
	pend                 []byte // the serialised request while queued
	// chunks: the framing of the chunked body being read, so far (need
	// is what it found missing)
	chunks chunked
	// paused: the requests behind the last one wait for its answer to
	// leave (serve); the sweep resumes them once it has.
	paused bool
	// charged: bytes charged to the server's budget for what it holds
	// (hold, settle); 0 once it is closed.
	charged int64
}

// needMore says a parse error only means the message is not complete yet.
// fasthttp (1.69) reports input ending inside a chunk-size line as an
// ErrBrokenChunk that names io.EOF in its text but does not wrap it (no
// Unwrap): taken for a verdict, a valid message split there was a 400, or
// a 502 for an upstream's answer. The text is all that tells it from a
// broken line, which must still be refused as soon as it is in (a line
// ending in a bare LF), so that is what is read; TestChunkedSplitAnywhere
// fails if fasthttp words it otherwise.
func needMore(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var bc fasthttp.ErrBrokenChunk
	return errors.As(err, &bc) && strings.HasSuffix(bc.Error(), ": "+io.EOF.Error())
}

// serve reads and starts requests from cl's buffer while it is not busy.
func (l *loop) serve(cl *client) {
	// Uncounted (count) only on the way out: after the request it starts
	// has been counted busy, so that Stop never sees neither.
	defer l.count(cl)
	for !cl.busy && !cl.closing && !cl.gone {
		// A client that does not read its answers gets no more until it
		// does: what the socket would not take of the last one waits in
		// the loop's buffer. Served on, a pipelining client that never
		// read had every answer (up to 16 MiB each) held in memory until
		// the write timeout; the fasthttp transport's blocking write stops
		// at the first. The sweep resumes it once the answer has left.
		if cl.paused = cl.c.OutboundBuffered() > 0; cl.paused {
			return
		}
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
		following, held := cl.chunks.start > 0, 0
		if following {
			var err error
			if buf, held, cl.need, err = cl.chunks.follow(cl.c, buf, l.s.o.MaxBodyBytes, l.s.o.MaxHeaderBytes); err != nil {
				l.reject(cl, err)
				return
			}
			if cl.need > 0 {
				return // a chunked body still arriving, all of it held
			}
		}
		used, err := l.read(cl, buf, 0)
		if err != nil && needMore(err) {
			// RFC 9112 §2.2 lets a recipient take a bare LF for CRLF, and
			// fasthttp's parser does, except that it finds the end of the
			// head only at a CRLFCRLF: a head ending in a bare-LF blank
			// line waited for the read timeout (408), unless a CRLF
			// request came after it. Accepted, by parsing a copy with
			// CRLFs: a 400 would need the same search for the head's end,
			// and would refuse what the parser takes in the other case.
			var extra int
			if l.crlf, extra = crlfHead(l.crlf[:0], buf); extra > 0 {
				used, err = l.read(cl, l.crlf, extra)
			}
		}
		if err != nil {
			if needMore(err) && cl.chunks.start > 0 {
				// A chunked body (read set start): from now on held and
				// followed. Every byte in is this message's.
				if !following {
					buf, held = cl.chunks.hold(buf)
				}
				_, _ = cl.c.Discard(len(buf) - held)
			}
			if needMore(err) {
				return
			}
			l.reject(cl, err)
			return
		}
		_, _ = cl.c.Discard(used - held)
		cl.started, cl.continued, cl.busy, cl.need, cl.chunks = 0, false, true, 0, chunked{}
		l.busy.Add(1)
		h := &cl.req.Header
		cl.http10 = !h.IsHTTP11()
		cl.close = h.ConnectionClose() || (cl.http10 && !bytes.EqualFold(h.Peek("Connection"), []byte("keep-alive")))
		cl.resp.Reset()
		cl.resp.Header.SetNoDefaultContentType(true)
		// The path without parsing the URI: a parsed URI would be
		// re-serialised (normalised) when the request is written upstream.
		if l.s.admin[string(proxy.AdminPath(h))] && l.s.o.Admin != nil && proxy.AdminFramed(h) {
			l.adminCall(cl)
			return
		}
		cl.x = proxy.NewExchange(&cl.req, &cl.resp, cl.peer, nil)
		l.step(cl, l.p.Begin(cl.x, false))
	}
}

// read parses a request from buf into cl.req and says how many bytes of
// the connection's input it took: buf's, less extra, the bytes crlfHead
// added to the head.
func (l *loop) read(cl *client, buf []byte, extra int) (int, error) {
	l.parses++
	cl.req.Reset()
	l.rd.Reset(buf)
	l.br.Reset(&l.rd)
	err := cl.req.Header.Read(l.br)
	if err == nil {
		head := len(buf) - extra - l.rd.Len() - l.br.Buffered()
		if !cl.req.Header.IsHTTP11() && !proxy.SupportedVersion(&cl.req.Header) {
			// Begin answers 505 and the connection closes (lingering): a
			// body still to come is not waited for (a short one waited out
			// the read timeout, 408), nor is a 100 owed.
			return head, nil
		}
		n := cl.req.Header.ContentLength()
		if n > 0 && n <= l.s.o.MaxBodyBytes {
			cl.need = head + n
		}
		if (n > 0 && n <= l.s.o.MaxBodyBytes || n == -1) && l.br.Buffered() == 0 && l.rd.Len() == 0 && !cl.continued && proxy.ExpectsContinue(&cl.req.Header) {
			// The client waits for this before it sends the body. Asked
			// only while none of the body is in: one that came (in part)
			// with the head needs no 100 (RFC 9110 §10.1.1), and a request
			// whose body came with it pays for no look-up. A body over the
			// limit is refused (413) without one.
			cl.continued = true
			_, _ = cl.c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
		}
		proxy.MarkTrailer(&cl.req.Header) // before the trailer's fields join the header
		err = cl.req.ContinueReadBody(l.br, l.s.o.MaxBodyBytes)
		if n == -1 && err == nil && cl.chunks.start == 0 {
			// Parsed from its first read: if the parser cut it before its
			// trailer section's end (see chunked), it is followed like a
			// chunked body arriving in pieces.
			if end := len(buf) - l.rd.Len() - l.br.Buffered(); end-extra > head {
				err = trailerEnd(buf[:end])
			}
		}
		if n == -1 && err != nil && needMore(err) {
			cl.chunks.start = head // serve holds and follows the message from here on
		}
	}
	return len(buf) - extra - l.rd.Len() - l.br.Buffered(), err
}

// crlfHead appends buf to dst with every bare LF of its request head (up to
// and including the blank line that ends it) made CRLF, and says how many
// bytes that added: 0, and dst unchanged, when the head is not complete or
// has no bare LF.
func crlfHead(dst, buf []byte) ([]byte, int) {
	end, lines := 0, 0
	for {
		i := bytes.IndexByte(buf[end:], '\n')
		if i < 0 {
			return dst, 0
		}
		line := bytes.TrimSuffix(buf[end:end+i], []byte("\r"))
		end += i + 1
		// Empty lines before the request line are skipped, as the parser
		// skips them; the first one after it ends the head.
		if len(line) > 0 {
			lines++
		} else if lines > 0 {
			break
		}
	}
	bare := bytes.Count(buf[:end], []byte("\n")) - bytes.Count(buf[:end], []byte("\r\n"))
	if bare == 0 {
		return dst, 0 // a CRLF head: what waits is the body
	}
	for i, c := range buf[:end] {
		if c == '\n' && (i == 0 || buf[i-1] != '\r') {
			dst = append(dst, '\r')
		}
		dst = append(dst, c)
	}
	return append(dst, buf[end:]...), bare
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

// fin sends a lingering client a FIN once its answer has left (gnet writes
// what the socket does not take later, from its buffer; the sweep looks
// again), as the fasthttp transport's sockio.Conn does: the answer is
// complete, and a client reading to the end of the connection learns it
// then, not when Linger has passed (a second per refused request). Reading
// goes on, dropping what the client still sends.
func (l *loop) fin(cl *client) {
	if cl.finned || cl.gone || cl.c.OutboundBuffered() > 0 {
		return
	}
	cl.finned, cl.lingerSince = true, l.now // the linger counts from here (sweep)
	_ = syscall.Shutdown(cl.c.Fd(), syscall.SHUT_WR)
	l.count(cl) // its answer is out
}

// step carries out what the chain asked for.
func (l *loop) step(cl *client, s proxy.Step) {
	switch s {
	case proxy.Done:
		l.p.Finish(cl.x)
		if cl.x.Close {
			// Closed by lingering, as after a reject: the client may still
			// be sending what it framed as this request's body.
			cl.close, cl.linger = true, true
		}
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
		l.settle(cl)
	}
}

// onLoop runs f on l's loop, from any goroutine. Once the loops are told
// to exit (Server.exit) f never runs: the connections are being closed
// anyway, and the loop's poller with them, so the task is not handed at
// all (see Server.exiting), and a request it was to answer gets none. Until
// then it is, and runs before the exit, unless the loop's urgent queue
// already holds netpoll.MaxPollEventsCap tasks: gnet queues it behind the
// exit signal.
func (l *loop) onLoop(f func()) {
	l.s.handMu.RLock()
	defer l.s.handMu.RUnlock()
	if l.s.exiting {
		return
	}
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
			if cl.resp.ConnectionClose() {
				// A refusal (proxy.AdminTrailer): closed by lingering,
				// as after the chain's.
				cl.close, cl.linger = true, true
			}
			l.reply(cl)
			l.serve(cl)
			l.settle(cl)
		})
	}()
}

// reply writes cl.resp and makes cl ready for its next request.
func (l *loop) reply(cl *client) {
	if cl.busy {
		cl.busy = false
		// After count: a draining Stop must not find the answer in
		// neither (l.busy).
		defer l.busy.Add(-1)
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
			// Nothing more is read (lingering drops what comes): the
			// bytes held for it go with its answer, not when the
			// connection closes (up to Linger later): a refused
			// message's, or the unread body of one the chain answered
			// early and closes after (505).
			cl.chunks = chunked{}
			_, _ = cl.c.Discard(cl.c.InboundBuffered())
			l.settle(cl)
			cl.lingerSince = cl.active // the sweep closes it, or the client does
			l.count(cl)                // until its answer is out (fin)
			l.fin(cl)
			return
		}
		if cl.c.OutboundBuffered() > 0 {
			// gnet drops what the socket has not taken yet when a
			// connection closes: closed here, an answer bigger than
			// that (a Connection: close or HTTP/1.0 request, any
			// answer while draining) reached the client cut short.
			// The sweep closes it once the answer is out, or at the
			// write timeout.
			cl.closeSent = true
			l.count(cl)
			return
		}
		_ = cl.c.Close()
		return
	}
	// The requests behind it wait for it to leave (serve, which looks
	// again); paused from here, it is counted for Stop before the request
	// leaves busy.
	cl.paused = cl.c.OutboundBuffered() > 0
	l.count(cl)
}

// count keeps cl counted in l.busy while an answer of its waits in the
// loop's buffer (paused, closeSent, lingering before its FIN) and it is
// open. Stop waits for these as
// for requests in flight: the engine's close drops what gnet has not
// written yet, which cut the answer and left unanswered the requests
// behind it.
func (l *loop) count(cl *client) {
	want := (cl.paused || cl.closeSent || cl.lingerSince != 0 && !cl.finned) && !cl.gone
	if want != cl.counted {
		cl.counted = want
		if want {
			l.busy.Add(1)
		} else {
			l.busy.Add(-1)
		}
	}
}
