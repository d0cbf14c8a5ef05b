package sockio

import (
	"syscall"
	"unsafe"
)

// PeerGone reports whether the peer has closed its side of the connection
// (its FIN) or reset it, without taking a byte the socket holds: one
// recv(2) with MSG_PEEK|MSG_DONTWAIT, as nginx looks at a client while its
// request is at the upstream (ngx_http_upstream_check_broken_connection).
// Bytes waiting (a pipelined request) say nothing about a FIN behind them
// and count as not gone. It is for a watcher on another goroutine than the
// connection's reader, which it does not disturb (Control takes no read
// lock and does not wait). It allocates nothing after its first call on a
// connection: a watcher asks every in-flight request's client this many
// times a second.
func (c *Conn) PeerGone() bool {
	c.gmu.Lock()
	defer c.gmu.Unlock()
	if c.peekFn == nil {
		// Built once, as readFn: a closure per call escaped to the heap
		// (two allocations per look).
		c.peekFn = c.peek
	}
	c.peeked = false
	_ = c.raw.Control(c.peekFn)
	return c.peeked || c.closed.Load()
}

// peek sets peeked to whether the peer closed or reset the connection;
// gmu is held. EAGAIN (nothing yet) and bytes waiting are no close.
func (c *Conn) peek(fd uintptr) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekBuf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	c.peeked = (e == 0 && r == 0) || e == syscall.ECONNRESET
}
