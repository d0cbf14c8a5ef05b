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
// lock and does not wait).
func (c *Conn) PeerGone() bool {
	gone := false
	_ = c.raw.Control(func(fd uintptr) {
		var b [1]byte
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		gone = (e == 0 && r == 0) || e == syscall.ECONNRESET
	})
	return gone || c.closed.Load()
}
