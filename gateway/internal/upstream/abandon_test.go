package upstream

import (
	"net"
	"testing"
)

// closeCount is a connection that only counts its Close calls.
type closeCount struct {
	net.Conn
	closes int
}

func (c *closeCount) Close() error {
	c.closes++
	return nil
}

// A connection the transport acquired for an abandoned call goes back to
// the pool unused; the watcher abandons the call again at its next tick
// (the client is still gone), which may come before the transport has
// released the connection. That Abandon must not close it: closed in the
// pool, it failed the next request to take it, another client's.
func TestAbandonDoesNotCloseAConnectionAttachRefused(t *testing.T) {
	var call Call
	call.Abandon()
	conn := &closeCount{}
	if call.attach(conn) {
		t.Fatal("attach accepted a connection for an abandoned call")
	}
	call.Abandon() // the watcher's next tick, before the connection is released
	if conn.closes != 0 {
		t.Fatalf("Abandon closed the connection attach refused (%d closes); it goes back to the pool", conn.closes)
	}
}

// An Abandon while the request is on its connection closes it, and
// detach then tells the transport not to pool it.
func TestAbandonClosesTheAttachedConnection(t *testing.T) {
	var call Call
	conn := &closeCount{}
	if !call.attach(conn) {
		t.Fatal("attach refused a connection for a live call")
	}
	call.Abandon()
	if conn.closes != 1 {
		t.Fatalf("%d closes, want 1", conn.closes)
	}
	if call.detach() {
		t.Fatal("detach after Abandon reported the call live")
	}
}
