package sockio

import (
	"net"
	"sync/atomic"
	"time"
)

// Cap bounds the client connections a Listener holds, as
// GATEWAY_LOOP_MAX_CONNS bounds the event loop's: fasthttp's own bound,
// Server.Concurrency, defaults to 262,144, and each slow client holds a
// goroutine and its read and write buffers (the read buffer alone 16 KiB
// in the gateway) until its read timeout. fasthttp's refusal over
// Concurrency is a text/plain 503 of its own; through Cap it is the same
// problem+json 503 gateway-busy bytes the event loop writes (Full).
//
// A connection counts from its accept until its socket is closed, the
// lingering close (linger.go) included, since the drain holds a buffer too.
type Cap struct {
	Max  int64  // connections held at once; one more is refused
	Full []byte // written to a refused connection before it is closed; nil: closed without a word
	// Refused, if set, is told of each refusal (the gateway logs them).
	Refused func(remote net.Addr)

	open atomic.Int64
}

// Open is the number of connections counted now.
func (c *Cap) Open() int64 { return c.open.Load() }

// take counts a connection in, unless the cap is full.
func (c *Cap) take() bool {
	if c.open.Add(1) <= c.Max {
		return true
	}
	c.open.Add(-1)
	return false
}

func (c *Cap) release() { c.open.Add(-1) }

// refuse answers conn Full and closes it at once, without lingering: a
// lingering close would hold the connection (and what it sends) for up
// to Linger, which is what the cap is there to refuse. The answer is a
// few hundred bytes into an empty send buffer; the deadline only keeps a
// broken socket from holding the accept loop.
func (c *Cap) refuse(conn net.Conn) {
	if len(c.Full) > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = conn.Write(c.Full)
	}
	_ = conn.Close()
	if c.Refused != nil {
		c.Refused(conn.RemoteAddr())
	}
}

// capped is a connection Wrap leaves as it is (not TCP) counted in a Cap.
type capped struct {
	net.Conn
	cap  *Cap
	done atomic.Bool
}

func (c *capped) Close() error {
	err := c.Conn.Close()
	if c.done.CompareAndSwap(false, true) {
		c.cap.release()
	}
	return err
}
