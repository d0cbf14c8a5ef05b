package upstream

import (
	"errors"
	"net"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// ErrAbandoned is the error of an exchange its Call abandoned (the client
// went away): the connection it was on is closed, never pooled.
var ErrAbandoned = errors.New("upstream call abandoned")

// Call lets another goroutine abandon an exchange that DoDeadline runs:
// the fasthttp pool's call cannot be cancelled, but closing the connection
// the request is on ends its wait at once, and tells the upstream's server
// (a Go service's request context ends), as the event loop does when its
// client leaves. The zero Call is ready; one Call serves one request at a
// time.
type Call struct {
	mu        sync.Mutex
	conn      net.Conn // the connection the request is on, while it is
	abandoned bool
}

// Abandon ends the exchange in flight, if any, and any later one of this
// request (a retry) before it starts.
func (c *Call) Abandon() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abandoned = true
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

// Abandoned reports whether Abandon was called.
func (c *Call) Abandoned() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.abandoned
}

// attach records conn as the one the request goes on; false: the call
// was abandoned, and conn must not be used. A refused conn is not
// recorded: it goes back to the pool unused, and a later Abandon (the
// watcher looks again every tick) closing it there would fail the request
// that takes it next.
func (c *Call) attach(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.abandoned {
		return false
	}
	c.conn = conn
	return true
}

// detach forgets the connection before it goes back to the pool (where
// Abandon must no longer reach it); false: the call was abandoned, and the
// connection is closed.
func (c *Call) detach() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = nil
	return !c.abandoned
}

// calls finds the Call of a request in flight by the request, the only
// thing the transport is given besides the pool. Sharded by the request's
// address so that concurrent requests rarely share a lock; a shard's map
// reuses its slots, so a request costs no allocation.
var calls [16]struct {
	mu sync.Mutex
	m  map[*fasthttp.Request]*Call
}

func callShard(req *fasthttp.Request) int {
	// fasthttp.Request is hundreds of bytes long: the low bits are the
	// same for every request.
	return int(uintptr(unsafe.Pointer(req))>>9) % len(calls)
}

// callOf is req's Call, or nil.
func callOf(req *fasthttp.Request) *Call {
	s := &calls[callShard(req)]
	s.mu.Lock()
	c := s.m[req]
	s.mu.Unlock()
	return c
}

// DoDeadline is e.Client.DoDeadline that call (nil: none) can abandon.
func (e *Endpoint) DoDeadline(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time, call *Call) error {
	if call == nil {
		return e.Client.DoDeadline(req, resp, deadline)
	}
	s := &calls[callShard(req)]
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*fasthttp.Request]*Call{}
	}
	s.m[req] = call
	s.mu.Unlock()
	err := e.Client.DoDeadline(req, resp, deadline)
	s.mu.Lock()
	delete(s.m, req)
	s.mu.Unlock()
	if err != nil && call.Abandoned() {
		return ErrAbandoned
	}
	return err
}
