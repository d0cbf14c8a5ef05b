package evloop

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
)

// memConn is a gnet.Conn whose input the test hands over piece by piece:
// what serve and answer use of a connection, and nothing else.
type memConn struct {
	gnet.Conn
	in, out []byte
	keep    []byte // in's storage, used again once in is empty
	// fresh: how many bytes at the end of in came with the read being
	// handled; the rest were left unread by earlier ones.
	fresh int
	// copied counts the bytes gnet's Peek would copy: it returns its
	// buffers as they are while the input is one read's, or what earlier
	// reads left (when n does not reach past it), and otherwise copies
	// all n bytes into one new slice.
	copied int
	closed bool
}

// feed appends b to the input: the next read.
func (c *memConn) feed(b string) {
	if len(c.in) == 0 {
		c.in = c.keep[:0]
	}
	c.in = append(c.in, b...)
	c.fresh = len(b)
	if cap(c.in) > cap(c.keep) { // a new array, starting at in's start
		c.keep = c.in[:0]
	}
}

func (c *memConn) InboundBuffered() int { return len(c.in) }
func (c *memConn) Peek(n int) ([]byte, error) {
	if n < 0 || n > len(c.in) {
		n = len(c.in)
	}
	if left := len(c.in) - c.fresh; left > 0 && n > left {
		c.copied += n
	}
	return c.in[:n], nil
}
func (c *memConn) Discard(n int) (int, error) {
	c.in = c.in[n:]
	c.fresh = min(c.fresh, len(c.in))
	return n, nil
}
func (c *memConn) Write(b []byte) (int, error) {
	c.out = append(c.out, b...)
	return len(b), nil
}
func (c *memConn) Close() error          { c.closed = true; return nil }
func (c *memConn) OutboundBuffered() int { return 0 }

// Fd is no descriptor: fin's shutdown(2) of a lingering client fails on it
// and is ignored.
func (c *memConn) Fd() int { return -1 }
func (c *memConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

// memLoop is a loop run by the test's goroutine: one client and one
// upstream connection, both memConns, the chain proxy's own. The order
// route's only endpoint is that connection, idle in its pool; the chain
// makes one attempt, so a failed one is the client's answer.
type memLoop struct {
	l      *loop
	cl     *client
	uc     *upconn
	client *memConn
	up     *memConn
}

func newMemLoop(t testing.TB, so Options) *memLoop {
	t.Helper()
	const addr = "127.0.0.1:9" // never dialled: the pool has a connection
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: addr, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
	tb, err := route.Parse("/api/v1/orders=order", time.Minute, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	so.Proxy = proxy.New(proxy.Options{Table: tb, Upstreams: pool, MaxAttempts: 1})
	l := New(so).loopOf(&countingLoop{})
	m := &memLoop{l: l, client: &memConn{}, up: &memConn{}}
	m.cl = &client{c: m.client, l: l, peer: netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	l.clients[m.cl] = struct{}{}
	pl := l.pool(addr)
	m.uc = &upconn{c: m.up, l: l, p: pl}
	pl.open = 1
	pl.idle = append(pl.idle, m.uc)
	return m
}

// fromClient hands b to the loop as the client's next read.
func (m *memLoop) fromClient(b string) {
	m.client.feed(b)
	m.l.serve(m.cl)
}

// fromUpstream hands b to the loop as the upstream connection's next read.
func (m *memLoop) fromUpstream(b string) gnet.Action {
	m.up.feed(b)
	return m.l.answer(m.uc)
}

// answers parses what the client was sent.
func (m *memLoop) answers(t testing.TB) []*fasthttp.Response {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(m.client.out))
	var out []*fasthttp.Response
	for {
		if _, err := br.Peek(1); err != nil {
			return out
		}
		r := &fasthttp.Response{}
		if err := r.Read(br); err != nil {
			t.Fatalf("answer %d to the client: %v (sent %q)", len(out)+1, err, m.client.out)
		}
		out = append(out, r)
	}
}
