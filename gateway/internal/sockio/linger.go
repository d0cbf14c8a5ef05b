package sockio

import (
	"net"
	"time"
)

// Lingering close of the connections a Listener accepts.
//
// fasthttp closes a connection as soon as it has answered a request it cut
// off (413 for a body over the limit, 431, 408, 400). Bytes of that request
// are then often still arriving, and a socket closed with unread bytes makes
// the kernel reset the connection: the client's next write fails with EPIPE
// or ECONNRESET, and an HTTP client that is still sending its body (Go's
// among them) reports that error instead of reading the 413 waiting for it.
// So a server connection closes the way nginx's lingering close and net/http's closeWriteAndWait do:
// send FIN first (the answer is complete), keep reading and dropping what the
// client still sends until it closes its side, Linger passes or lingerBytes
// were dropped, and only then close the socket. The waiting happens in a
// goroutine of its own; Close returns at once. Whether bytes are unread when
// Close is called does not tell: the rest of a refused request (a chunked
// body's last chunk) may still be on its way. fasthttp has no hook for this,
// hence the few lines here. The event-loop transport lingers in its own loop
// (internal/evloop).

// Linger bounds how long a closed server connection keeps draining.
const Linger = time.Second

// lingerBytes bounds what it drains: a client uploading far more than that
// after being refused is reset, as it would be by nginx.
const lingerBytes = 1 << 20

// Close closes the connection; a server connection (Listener), by
// lingering as above, unless a Read is waiting on it: that is fasthttp
// closing an idle connection at shutdown from another goroutine, the Read
// must wake with net.ErrClosed at once, and an idle connection has no request
// in flight to linger for. Closing twice is harmless.
func (c *Conn) Close() error {
	if !c.server {
		return c.TCPConn.Close()
	}
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if !c.rmu.TryLock() {
		return c.closeNow()
	}
	c.rmu.Unlock()
	if err := c.TCPConn.CloseWrite(); err != nil {
		return c.closeNow() // the peer is gone already: nothing to linger for
	}
	go func() {
		drain(c.TCPConn)
		c.uncount()
	}()
	return nil
}

// closeNow closes a server connection's socket without lingering.
func (c *Conn) closeNow() error {
	err := c.TCPConn.Close()
	c.uncount()
	return err
}

// uncount releases the connection's place in its Listener's Cap, once its
// socket is closed (Close's CAS makes that once).
func (c *Conn) uncount() {
	if c.cap != nil {
		c.cap.release()
	}
}

// closedErr is the error of a Read or Write after Close, as net's.
func (c *Conn) closedErr(op string) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: net.ErrClosed}
}

// drain reads and drops what the peer still sends, within the bounds, then
// closes. The read deadline also wakes any Read of the connection's own
// goroutine that was still waiting.
func drain(tc *net.TCPConn) {
	defer tc.Close()
	_ = tc.SetReadDeadline(time.Now().Add(Linger))
	buf := make([]byte, 16<<10)
	for n := 0; n < lingerBytes; {
		m, err := tc.Read(buf)
		n += m
		if err != nil {
			return
		}
	}
}
