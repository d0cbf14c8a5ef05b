// Package sockio gives the gateway's TCP connections a cheaper read and write
// path: the same non-blocking sockets and the same netpoller parking as the
// standard library, but each read(2)/write(2) is issued as a raw system call.
//
// Why: a proxy makes about six socket system calls per request. The standard
// library brackets every one with the runtime's entersyscall/exitsyscall,
// which marks the goroutine's P as "in a system call". On a busy 2-core
// machine a loopback write often takes longer than a sysmon tick, because the
// kernel delivers the segment to the receiver inline, so sysmon hands the P to
// another thread (a futex wake-up and a context switch) and the writer must
// find a P again when the call returns. The gateway's profiles showed those
// hand-offs as a large share of its CPU (bench/README.md). A read or write on
// a non-blocking socket never sleeps in the kernel, so there is nothing to
// hand the P off for: RawSyscall keeps it, the way an event-loop server such
// as nginx keeps its worker busy. Waiting for readiness still goes through
// syscall.RawConn, so deadlines, Close and the netpoller work as before.
//
// No library offers this for plain net.Conn (event-loop libraries replace
// the whole server model instead), hence the few lines here.
//
// Upstream connections (WrapExchange) save one more call per request. Go's
// netpoller forgets a socket's readiness at the start of every Read, so each
// Read must try read(2) before it may wait; right after a request is sent
// that try almost always fails with EAGAIN, because the upstream has not
// answered yet (about one wasted system call per proxied request, which
// nginx does not make: it reads an upstream socket only once epoll says it is
// readable). An exchange connection holds a small request back until the
// next Read and sends it inside that Read's RawConn callback, after the
// readiness was reset: whatever arrives from then on is an answer to it and
// is remembered by the netpoller, so the callback can wait without the
// speculative read. Only a client whose peer never speaks first (an HTTP/1.1
// upstream) may use it; the server side must not, because a pipelining
// client's next request can arrive before the response is written.
//
// The saving is given back: an upstream that answers twice leaves bytes
// on the idle connection, and only a read before the request leaves can
// see them (readOnce, or Write for a request too large to hold back), so
// an exchange makes as many system calls as the standard order. What
// remains is that such bytes fail the exchange (ErrUnasked) instead of
// becoming its answer.
package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read and Write use raw system calls. Every
// other method is the *net.TCPConn's.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn
	// The callbacks handed to RawConn are built once per connection and
	// find their arguments here: a closure per call would escape to the
	// heap (two allocations per request). The mutexes keep the net.Conn
	// promise that Read and Write may be called from several goroutines.
	rmu, wmu sync.Mutex
	rbuf     []byte
	rn       int
	rerr     syscall.Errno
	readFn   func(fd uintptr) bool
	wbuf     []byte
	wn       int
	werr     syscall.Errno
	writeFn  func(fd uintptr) bool

	// Exchange mode (WrapExchange): pend holds request bytes that the next
	// Read sends before waiting for the answer; wmu guards it. sendFirst is
	// set by Read (under rmu) when it found pend non-empty, unsent when the
	// socket could not take all of it inside the callback.
	exchange  bool
	pend      []byte
	sendFirst bool
	unsent    bool
	sendErr   bool // rerr came from sending the held-back request
	// partSent: part of the request went out at once (a large body), so
	// an answer may be in before the rest is sent (see readOnce).
	partSent bool
	whole    bool // Read's copy of !partSent, under rmu
	unasked  bool // the peer had sent bytes before it was asked
	gone     bool // the peer had closed before it was asked
	// fresh: a request was started since the last Read (Write, under
	// wmu), which then resets heard (under rmu). reused (under wmu): the
	// connection had been answered on when that request started. heard:
	// a byte of the answer to the request in flight has arrived. answered:
	// heard was ever set, so the peer has answered on this connection (it
	// only ever answers); an atomic, as Write reads it. Together they tell
	// ErrUnanswered.
	fresh, reused bool
	heard         bool
	answered      atomic.Bool
	// Write's look for unasked bytes before a request too large to hold
	// back leaves (probe), under wmu: the byte read and the verdict.
	probeBuf [1]byte
	probed   peerState
	probeFn  func(fd uintptr)

	// PeerGone's look (gone.go), under gmu: its callback, built on the
	// first look, the byte it peeks into, and its verdict.
	gmu     sync.Mutex
	peekFn  func(fd uintptr)
	peekBuf [1]byte
	peeked  bool

	server   bool        // accepted by a Listener: Close lingers (linger.go)
	cap      *Cap        // the Listener's, if any: released when the socket is closed
	closed   atomic.Bool // Close was called (server connections): Read and Write fail
	timedOut atomic.Bool // a Read failed at its deadline (ReadTimedOut)
}

// ErrUnasked is the error of an exchange Read (or, for a request too
// large to hold back, Write) that found bytes from the peer before it sent
// the request: the rest of an earlier answer (an
// upstream that answered twice, or sent more than it announced). Taken as
// this request's answer, they would shift every later answer on the
// connection onto the request after its own, one client's answer to
// another; the request is not sent and the connection must be dropped.
var ErrUnasked = errors.New("the peer sent bytes before it was asked")

// ErrPeerClosed is the error of an exchange Read (or Write, as for
// ErrUnasked) that found the connection closed by the peer (its FIN)
// before it sent the request: an upstream that closed a keep-alive
// connection while it sat idle in the pool (its idle timeout, a restart).
// The request is not sent, so it may go on another connection whatever its
// method; this one must be dropped.
var ErrPeerClosed = errors.New("the peer closed the connection before the request was sent")

// ErrUnanswered is the error of an exchange Read or Write that found the
// connection closed or reset by the peer after the request went out (all
// of it or part) and before any byte of an answer came, on a connection the
// peer had answered on before: most often the peer's keep-alive idle
// timeout firing as the request arrived, which the look before sending
// cannot see (ErrPeerClosed). The request may or may not have been
// processed; one that may run twice can be sent again on a new connection
// (RFC 9112 §9.3.1), as Go's Transport does. The error also matches what
// the read or write failed with (io.EOF, syscall.ECONNRESET or
// syscall.EPIPE). A new connection closed unanswered gives the plain error:
// no race explains that one.
var ErrUnanswered = errors.New("the peer closed a reused connection before answering")

// unanswered is ErrUnanswered with the failure it was told from.
type unanswered struct{ cause error }

func (e unanswered) Error() string   { return ErrUnanswered.Error() + ": " + e.cause.Error() }
func (e unanswered) Unwrap() []error { return []error{ErrUnanswered, e.cause} }

// reset says whether a read or write failed because the peer reset the
// connection (or closed it, for a write): errno is the system call's
// error, err any other.
func reset(err error, errno syscall.Errno) bool {
	if errno != 0 {
		return errno == syscall.ECONNRESET || errno == syscall.EPIPE
	}
	return err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}

// unansweredErr is ErrUnanswered shaped as the net package shapes errors:
// cause is an io.EOF, a syscall.Errno or an error wrapErr made.
func (c *Conn) unansweredErr(op string, cause error) error {
	var oe *net.OpError
	if errors.As(cause, &oe) {
		op, cause = oe.Op, oe.Err
	} else if errno, ok := cause.(syscall.Errno); ok {
		cause = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: unanswered{cause}}
}

// maxDeferred bounds what an exchange connection holds back: a request line
// and headers (fasthttp flushes requests in 4 KiB buffers), which an idle
// keep-alive socket's send buffer always takes at once. Larger writes go out
// immediately.
const maxDeferred = 4 << 10

// Wrap returns c with the raw read/write path when it is a *net.TCPConn, and
// c unchanged otherwise (TLS, unix sockets and test pipes keep their own
// path).
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	w := &Conn{TCPConn: tc, raw: raw}
	w.readFn, w.writeFn = w.readOnce, w.writeAll
	return w
}

// WrapExchange is Wrap for a client connection to a peer that only ever
// answers (HTTP/1.1 to an upstream): small writes are held back and sent by
// the next Read, which then waits for the answer without a speculative
// read(2) (see the package comment). A write error of a held-back request is
// returned by that Read.
func WrapExchange(c net.Conn) net.Conn {
	w := Wrap(c)
	if sc, ok := w.(*Conn); ok {
		sc.exchange = true
		sc.pend = make([]byte, 0, maxDeferred)
		sc.probeFn = sc.probe
	}
	return w
}

// Read reads like net.Conn.Read: it returns what the socket holds, waiting
// (in the netpoller, honouring the read deadline) only when it holds nothing.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.closed.Load() { // a server connection lingering (linger.go)
		return 0, c.closedErr("read")
	}
	c.rmu.Lock()
	var reused bool
	if c.exchange {
		c.wmu.Lock()
		c.sendFirst = len(c.pend) > 0
		c.whole, c.partSent = !c.partSent, false
		if c.fresh {
			c.fresh, c.heard = false, false
		}
		reused = c.reused
		c.wmu.Unlock()
	}
	c.rbuf, c.rn, c.rerr, c.unsent, c.sendErr, c.unasked, c.gone = p, 0, 0, false, false, false, false
	err := c.raw.Read(c.readFn)
	if err == nil && c.unsent {
		// The socket took only part of the held-back request: send the rest
		// the ordinary way (waiting for space), then read as usual.
		c.wmu.Lock()
		_, err = c.writeLocked(nil)
		c.wmu.Unlock()
		if err == nil {
			err = c.raw.Read(c.readFn)
		}
	}
	n, errno, op := c.rn, c.rerr, "read"
	if c.sendErr {
		op = "write"
	}
	unasked, gone := c.unasked, c.gone
	eof := n == 0 && errno == 0 && err == nil
	lost := reused && !c.heard && !unasked && !gone && (eof || reset(err, errno))
	if n > 0 && errno == 0 && err == nil && !c.heard {
		c.heard = true
		c.answered.Store(true)
	}
	c.rbuf = nil // do not pin the caller's buffer
	c.rmu.Unlock()
	switch {
	case unasked:
		return 0, wrapErr("read", c, ErrUnasked)
	case gone:
		return 0, wrapErr("read", c, ErrPeerClosed)
	case lost && err != nil:
		return 0, c.unansweredErr(op, err)
	case lost && errno != 0:
		return 0, c.unansweredErr(op, errno)
	case lost:
		return 0, c.unansweredErr("read", io.EOF)
	case err != nil:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.timedOut.Store(true)
		}
		return 0, wrapErr(op, c, err)
	case errno != 0:
		return 0, wrapErr(op, c, errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// ReadTimedOut reports whether a Read on c (or, for a TLS connection, on
// the connection under it) failed at its deadline. A parser may wrap that
// failure in an error of its own that hides the cause (fasthttp's
// ErrBrokenChunk does, for a body cut off inside a chunk-size line): asked
// here, a request the read timeout cut off is told from a malformed one.
// False for a connection this package did not wrap.
func ReadTimedOut(c net.Conn) bool {
	if t, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = t.NetConn()
	}
	sc, ok := c.(*Conn)
	return ok && sc.timedOut.Load()
}

// readOnce is one read(2); false asks RawConn to wait for readability. On
// an exchange connection with a held-back request, the first call sends it
// instead and waits: the readiness RawConn.Read reset just before cannot
// have been missed, since nothing is answered before it is asked.
//
// Two exceptions cost the read(2) back. Nothing may be waiting before a
// whole request leaves (ErrUnasked); bytes that arrived while the
// connection sat idle left no readiness behind (RawConn.Read reset it), so
// only a read can tell, and it is almost always EAGAIN. And when part of
// the request went out earlier, the peer may have answered already (an
// early 401 or 413 before the body is read): that readiness was reset too,
// so the call reads after sending instead of waiting, or the answer would
// be found only at the deadline.
func (c *Conn) readOnce(fd uintptr) bool {
	if c.sendFirst {
		c.sendFirst = false
		if c.whole {
			switch look(fd, c.rbuf) {
			case peerSent:
				c.unasked = true
				return true
			case peerGone:
				c.gone = true
				return true
			}
		}
		c.wmu.Lock()
		errno := c.sendPending(fd)
		c.wmu.Unlock()
		switch {
		case errno == syscall.EAGAIN:
			c.unsent = true
			return true
		case errno != 0:
			c.rerr, c.sendErr = errno, true
			return true
		case c.whole:
			return false
		}
	}
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(r)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = e
		return true
	}
}

// Write writes all of p, waiting for buffer space in the netpoller when the
// socket is full (honouring the write deadline). An exchange connection
// holds a small p back for the next Read instead.
func (c *Conn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.closedErr("write")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.exchange && len(c.pend) == 0 && !c.partSent {
		// A request starts (Read resets both after one).
		c.fresh, c.reused = true, c.answered.Load()
	}
	if c.exchange && len(c.pend)+len(p) <= maxDeferred {
		c.pend = append(c.pend, p...)
		return len(p), nil
	}
	if c.exchange && !c.partSent {
		// The first bytes of this exchange leave now, not in Read, so
		// Read's look for unasked bytes would come too late: whatever is
		// waiting then would be taken for this request's answer. Looked
		// for here instead; nothing is sent, held back or not.
		if err := c.raw.Control(c.probeFn); err != nil {
			return 0, wrapErr("write", c, err)
		}
		switch c.probed {
		case peerSent:
			c.pend = c.pend[:0]
			return 0, wrapErr("write", c, ErrUnasked)
		case peerGone:
			c.pend = c.pend[:0]
			return 0, wrapErr("write", c, ErrPeerClosed)
		}
	}
	first := c.exchange && !c.partSent
	c.partSent = c.exchange
	n, err := c.writeLocked(p)
	if first && c.reused && reset(err, 0) {
		// The request's first bytes to leave: no answer can have come
		// (the look above found none), so none was lost unread.
		return n, c.unansweredErr("write", err)
	}
	return n, err
}

// probe sets probed to what the peer did before it was asked; wmu is
// held.
func (c *Conn) probe(fd uintptr) {
	c.probed = look(fd, c.probeBuf[:])
}

// peerState is what look found on an idle exchange connection.
type peerState uint8

const (
	peerQuiet peerState = iota // nothing: the usual case (EAGAIN)
	peerSent                   // bytes nobody asked for (ErrUnasked)
	peerGone                   // the peer's FIN (ErrPeerClosed)
)

// look reports whether the socket holds bytes, reading (and so dropping)
// up to len(buf) of them, or the peer's FIN (a read of 0 bytes); only a
// connection that must be dropped when it does may ask. A FIN is told
// apart because the request is then not sent at all: it was sent into the
// closed connection and failed as an upstream that did not answer, a 502
// even for a request that could safely go on another connection. Errors (a
// reset among them) are left to the send and the read after it, as they
// would be without the look.
func look(fd uintptr, buf []byte) peerState {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	switch {
	case e == 0 && r > 0:
		return peerSent
	case e == 0:
		return peerGone
	}
	return peerQuiet
}

// writeLocked sends what is held back, then p; wmu is held.
func (c *Conn) writeLocked(p []byte) (int, error) {
	if len(c.pend) > 0 {
		c.wbuf, c.wn, c.werr = c.pend, 0, 0
		err := c.raw.Write(c.writeFn)
		c.pend, c.wbuf = c.pend[:0], nil
		if err == nil && c.werr != 0 {
			err = c.werr
		}
		if err != nil {
			return 0, wrapErr("write", c, err)
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.raw.Write(c.writeFn)
	n, errno := c.wn, c.werr
	c.wbuf = nil
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return n, wrapErr("write", c, err)
	}
	return n, nil
}

// sendPending writes the held-back bytes with raw write(2)s; wmu is held.
// EAGAIN leaves the unsent rest at the front of pend.
func (c *Conn) sendPending(fd uintptr) syscall.Errno {
	c.wbuf, c.wn, c.werr = c.pend, 0, 0
	done := c.writeAll(fd)
	sent, errno := c.wn, c.werr
	c.wbuf = nil
	if !done {
		c.pend = c.pend[:copy(c.pend, c.pend[sent:])]
		return syscall.EAGAIN
	}
	c.pend = c.pend[:0]
	return errno
}

// writeAll writes what is left of wbuf; false asks RawConn to wait for
// buffer space.
func (c *Conn) writeAll(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// wrapErr shapes errors like the net package does, so callers that test for
// timeouts (net.Error), closed connections (net.ErrClosed) or resets
// (syscall.ECONNRESET via errors.Is) see what they would see without sockio.
func wrapErr(op string, c *Conn, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Listener wraps every accepted connection with Wrap, and closes it by
// lingering (linger.go). With a Cap, a connection over it is answered and
// closed here, never handed to the server.
type Listener struct {
	net.Listener
	Cap *Cap // nil: no bound
}

// Accept accepts the next connection the cap has room for.
func (l Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.Cap != nil && !l.Cap.take() {
			l.Cap.refuse(c)
			continue
		}
		w := Wrap(c)
		sc, ok := w.(*Conn)
		switch {
		case ok:
			sc.server, sc.cap = true, l.Cap
		case l.Cap != nil:
			w = &capped{Conn: w, cap: l.Cap}
		}
		return w, nil
	}
}
