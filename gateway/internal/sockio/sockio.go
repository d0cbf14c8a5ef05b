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
package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
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
}

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

// Read reads like net.Conn.Read: it returns what the socket holds, waiting
// (in the netpoller, honouring the read deadline) only when it holds nothing.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.raw.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rbuf = nil // do not pin the caller's buffer
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, wrapErr("read", c, err)
	case errno != 0:
		return 0, wrapErr("read", c, errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readOnce is one read(2); false asks RawConn to wait for readability.
func (c *Conn) readOnce(fd uintptr) bool {
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
// socket is full (honouring the write deadline).
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.raw.Write(c.writeFn)
	n, errno := c.wn, c.werr
	c.wbuf = nil
	c.wmu.Unlock()
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return n, wrapErr("write", c, err)
	}
	return n, nil
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

// Listener wraps every accepted connection with Wrap.
type Listener struct{ net.Listener }

// Accept accepts the next connection.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
