package evloop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/pkg/freeport"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
)

type staticRes map[string][]upstream.Instance

func (s staticRes) Instances(svc string) []upstream.Instance { return s[svc] }

// slowLimiter cannot decide locally, so every request takes the Blocked
// path: a goroutine, then back onto its loop.
type slowLimiter struct{ calls atomic.Int64 }

func (l *slowLimiter) Allow(context.Context, []byte) (quota.Decision, error) {
	l.calls.Add(1)
	time.Sleep(time.Millisecond)
	return quota.Decision{Allowed: true}, nil
}

// startUpstream is a fasthttp server echoing the request target; /slow
// paths answer after 2s. It counts the connections it has seen closed.
func startUpstream(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var closed atomic.Int64
	srv := &fasthttp.Server{ConnState: func(_ net.Conn, st fasthttp.ConnState) {
		if st == fasthttp.StateClosed {
			closed.Add(1)
		}
	}, Handler: func(ctx *fasthttp.RequestCtx) {
		if strings.Contains(string(ctx.RequestURI()), "/slow") {
			time.Sleep(2 * time.Second)
		}
		if strings.Contains(string(ctx.RequestURI()), "/echo") {
			ctx.SetBody(ctx.Request.Body()) // a large answer for a large request
			return
		}
		ctx.SetBodyString("upstream:" + string(ctx.RequestURI()) + ":" + string(ctx.Request.Header.Peek(proxy.TimeoutHeader)))
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		// Shutdown waits for every connection to close. A dial the gateway
		// had in flight at its Stop stayed open once (gnet's Enroll waiting
		// for a loop that had exited; Stop now waits for its dials,
		// TestStopLeavesNoUpstreamDialBehind) and hung this cleanup for the
		// whole test binary's timeout: bound it still, and say why the test
		// went on.
		ctx, cancel := context.WithTimeout(context.Background(), serveBound)
		defer cancel()
		if err := srv.ShutdownWithContext(ctx); err != nil {
			t.Logf("upstream shutdown: %v (a connection the gateway left open)", err)
		}
	})
	return ln.Addr().String(), &closed
}

func startServer(t *testing.T, o proxy.Options, so Options) string {
	addr, _ := startServerS(t, o, so)
	return addr
}

func startServerS(t *testing.T, o proxy.Options, so Options) (string, *Server) {
	t.Helper()
	up, _ := startUpstream(t)
	addr, s, _ := startServerWith(t, o, so, staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}})
	return addr, s
}

// startServerWith serves the order route from the instances res lists,
// with a route timeout of 300 ms; the pool is the server's Endpoints, as in
// the gateway.
func startServerWith(t *testing.T, o proxy.Options, so Options, res upstream.Resolver) (string, *Server, *upstream.Pool) {
	t.Helper()
	return startServerTimed(t, o, so, res, 300*time.Millisecond)
}

// startServerTimed is startServerWith with the route timeout given: a test
// that moves megabytes per request under -race on a loaded machine needs
// more than 300 ms to see no 504 it did not ask for.
func startServerTimed(t *testing.T, o proxy.Options, so Options, res upstream.Resolver, timeout time.Duration) (string, *Server, *upstream.Pool) {
	t.Helper()
	pool := upstream.NewPool(res, []string{"order"}, upstream.ClientOptions{})
	tb, err := route.Parse("/api/v1/orders=order", timeout, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	o.Table = tb
	addr, s := startServerOn(t, o, so, pool)
	return addr, s, pool
}

// startServerOn is startServerTimed over a pool and route table (o.Table)
// the test has made, so that it can set the service's breaker or budget
// before any loop reads them.
func startServerOn(t *testing.T, o proxy.Options, so Options, pool *upstream.Pool) (string, *Server) {
	t.Helper()
	so.Endpoints = pool
	o.Upstreams = pool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	so.Addr, so.Proxy = addr, proxy.New(o)
	so.Admin = func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }
	so.AdminPaths = []string{"/healthz"}
	s := New(so)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
		waitServed(t, errc)
	})
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server did not start")
	return "", nil
}

// serveBound is how long Serve may take to return once Stop has: Stop
// itself is bounded by its context, and Serve returns when the engine has
// closed every connection, which follows at once.
const serveBound = 10 * time.Second

// waitServed waits for Serve's result on errc after a Stop. An unbounded
// receive hung the whole test binary until go test's -timeout (seen once
// under -race) and named no goroutine; this fails the test after
// serveBound instead, with every goroutine's stack to show where Serve
// is stuck. The Serve goroutine is then left behind: the test has failed.
func waitServed(t *testing.T, errc <-chan error) {
	t.Helper()
	select {
	case <-errc:
	case <-time.After(serveBound):
		buf := make([]byte, 1<<20)
		t.Errorf("Serve did not return within %v of Stop; goroutines:\n%s", serveBound, buf[:runtime.Stack(buf, true)])
	}
}

// roundTrips writes raw on one connection and reads n responses.
func roundTrips(t *testing.T, addr, raw string, n int) []*fasthttp.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*fasthttp.Response
	for range n {
		r := &fasthttp.Response{}
		if err := r.Read(br); err != nil {
			t.Fatalf("response %d: %v", len(out)+1, err)
		}
		out = append(out, r)
	}
	return out
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	lim := &slowLimiter{}
	addr := startServer(t, proxy.Options{IPLimit: lim}, Options{MaxBodyBytes: 1 << 10})
	raw := ""
	for i := range 4 {
		raw += fmt.Sprintf("GET /api/v1/orders/%d HTTP/1.1\r\nHost: gw\r\n\r\n", i)
	}
	raw += "GET /nope HTTP/1.1\r\nHost: gw\r\n\r\nGET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"
	rs := roundTrips(t, addr, raw, 6)
	for i := range 4 {
		if want := fmt.Sprintf("upstream:/api/v1/orders/%d:", i); rs[i].StatusCode() != 200 || !strings.HasPrefix(string(rs[i].Body()), want) {
			t.Fatalf("answer %d: %d %q, want 200 %q", i, rs[i].StatusCode(), rs[i].Body(), want)
		}
		if len(rs[i].Header.Peek(proxy.RequestIDHeader)) == 0 {
			t.Fatalf("answer %d has no request id", i)
		}
	}
	if rs[4].StatusCode() != 404 || string(rs[5].Body()) != "ok" {
		t.Fatalf("404 then health: %d, %q", rs[4].StatusCode(), rs[5].Body())
	}
	if lim.calls.Load() != 4 { // the limiter ran off the loop for each routed request
		t.Fatalf("limiter calls %d, want 4", lim.calls.Load())
	}
}

func TestLimitsAndTimeouts(t *testing.T) {
	addr := startServer(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 10, ReadTimeout: 300 * time.Millisecond})

	t.Run("route deadline is 504 and the upstream saw it", func(t *testing.T) {
		start := time.Now()
		r := roundTrips(t, addr, "GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]
		if r.StatusCode() != 504 || time.Since(start) > 1500*time.Millisecond {
			t.Fatalf("status %d after %v, want 504 near 300ms", r.StatusCode(), time.Since(start))
		}
		r = roundTrips(t, addr, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]
		if !strings.HasPrefix(string(r.Body()), "upstream:/api/v1/orders/1:") || strings.HasSuffix(string(r.Body()), ":") {
			t.Fatalf("upstream did not get %s: %q", proxy.TimeoutHeader, r.Body())
		}
	})
	t.Run("body over the limit is 413, chunked too", func(t *testing.T) {
		body := strings.Repeat("x", 2<<10)
		r := roundTrips(t, addr, fmt.Sprintf("POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s", len(body), body), 1)[0]
		if r.StatusCode() != 413 {
			t.Fatalf("plain: %d", r.StatusCode())
		}
		r = roundTrips(t, addr, fmt.Sprintf("POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body), 1)[0]
		if r.StatusCode() != 413 {
			t.Fatalf("chunked: %d", r.StatusCode())
		}
	})
	t.Run("headers over 16 KiB are 431", func(t *testing.T) {
		r := roundTrips(t, addr, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nX-Big: "+strings.Repeat("a", 17<<10)+"\r\n\r\n", 1)[0]
		if r.StatusCode() != 431 {
			t.Fatalf("status %d", r.StatusCode())
		}
	})
	t.Run("a slow request is 408 and closed", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = io.WriteString(c, "GET /api/v1/orders HTTP/1.1\r\nHo")
		var r fasthttp.Response
		br := bufio.NewReader(c)
		if err := r.Read(br); err != nil || r.StatusCode() != 408 {
			t.Fatalf("status %d err %v, want 408", r.StatusCode(), err)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("connection still open after 408: %v", err)
		}
	})
}

// Stop lets a request in flight finish and tells its client to go.
func TestStopDrainsRequestsInFlight(t *testing.T) {
	addr, s := startServerS(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 10})
	got := make(chan *fasthttp.Response, 1)
	go func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
		r := &fasthttp.Response{}
		if r.Read(bufio.NewReader(c)) != nil {
			r = nil
		}
		got <- r
	}()
	time.Sleep(100 * time.Millisecond) // the request is at the upstream
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r == nil || r.StatusCode() != 504 || !r.ConnectionClose() {
		t.Fatalf("request in flight during Stop: %v", r)
	}
}

// Bodies larger than a socket read travel whole both ways, in order with
// the request after them.
func TestLargeBodiesBothWays(t *testing.T) {
	addr := startServer(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 20})
	body := strings.Repeat("0123456789abcdef", 40<<10) // 640 KiB
	raw := fmt.Sprintf("POST /api/v1/orders/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s", len(body), body) +
		"GET /api/v1/orders/after HTTP/1.1\r\nHost: gw\r\n\r\n"
	rs := roundTrips(t, addr, raw, 2)
	if rs[0].StatusCode() != 200 || string(rs[0].Body()) != body {
		t.Fatalf("echo: %d, %d bytes back of %d", rs[0].StatusCode(), len(rs[0].Body()), len(body))
	}
	if !strings.HasPrefix(string(rs[1].Body()), "upstream:/api/v1/orders/after:") {
		t.Fatalf("request after the large one: %q", rs[1].Body())
	}
}

// TestRestartRightAfterStop: Stop closes the clients' connections first, which leaves them in TIME_WAIT on the
// gateway's port; a gateway started again at once must still bind it.
func TestRestartRightAfterStop(t *testing.T) {
	addr, s := startServerS(t, proxy.Options{}, Options{})
	if rs := roundTrips(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1); rs[0].StatusCode() != 200 {
		t.Fatalf("healthz %d", rs[0].StatusCode())
	}
	keep, err := net.Dial("tcp", addr) // open while the server stops: closed from the server's side
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	again := New(Options{Addr: addr, Proxy: s.o.Proxy, Endpoints: s.o.Endpoints, Admin: s.o.Admin, AdminPaths: s.o.AdminPaths})
	errc := make(chan error, 1)
	go func() { errc <- again.Serve() }()
	for range 100 {
		select {
		case err := <-errc:
			t.Fatalf("restart on %s: %v", addr, err)
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			_ = again.Stop(ctx)
			waitServed(t, errc)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("restarted server did not answer")
}

// crlfHead rewrites a complete head with bare LFs, and only that: a CRLF
// head (whose body is what the parser waits for) and a head not yet
// complete are left to the parser.
func TestCRLFHead(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{"GET / HTTP/1.1\nHost: a\n\nbody\n", "GET / HTTP/1.1\r\nHost: a\r\n\r\nbody\n"},
		{"GET / HTTP/1.1\r\nHost: a\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"\n\r\nGET / HTTP/1.1\n\n", "\r\n\r\nGET / HTTP/1.1\r\n\r\n"},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nbo\ndy", ""},
		{"GET / HTTP/1.1\nHost: a\n", ""},
		{"\n\n", ""},
	} {
		out, added := crlfHead(nil, []byte(c.in))
		if c.out == "" {
			if added != 0 {
				t.Errorf("%q: rewritten to %q", c.in, out)
			}
			continue
		}
		if string(out) != c.out || added != len(c.out)-len(c.in) {
			t.Errorf("%q: %q (+%d), want %q", c.in, out, added, c.out)
		}
	}
}

// A client cut off mid-request reads its answer and then the end of the
// connection, while the gateway still drops what it sends for Linger (an
// hour here, so only the FIN can end the read): the connection used to stay
// open, FIN and all, until Linger passed, a second per refused request for
// a client reading to the end, though the README promised a FIN after the
// answer on both transports. A parse error (reject) and a refusal by the
// chain (505, whose announced body never comes).
func TestRefusedClientGetsItsFINAtOnce(t *testing.T) {
	addr := startServer(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 10, ReadTimeout: time.Hour, Linger: time.Hour})
	for _, c := range []struct {
		raw    string
		status int
	}{
		{"GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: -3\r\n\r\n", 400},
		{"POST /api/v1/orders HTTP/2.0\r\nHost: gw\r\nContent-Length: 100\r\n\r\nabc", 505},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second)) // a guard only: without the FIN the read waits an hour
		if _, err := io.WriteString(conn, c.raw); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		var r fasthttp.Response
		if err := r.Read(br); err != nil || r.StatusCode() != c.status {
			t.Fatalf("%q: status %d err %v, want %d", c.raw, r.StatusCode(), err, c.status)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("%q: after the answer %v, want the end of the connection", c.raw, err)
		}
		// Still lingering: what the client sends now is dropped, not refused.
		if _, err := io.WriteString(conn, "more of the refused request"); err != nil {
			t.Fatalf("%q: write while lingering: %v", c.raw, err)
		}
		conn.Close()
	}
}

// TestStopReturnsWhenServeDoes: Stop returns once the engine is down, which
// is when Serve returns, not at the next look of gnet's Engine.Stop, which
// polls for it every 500 ms (shutdownPollInterval): that poll was most of
// the half second a Ctrl-C of the embedded run spent on the gateway. The
// gap between the two returns is the mechanism under test: a wake-up on
// Serve's return is a goroutine switch, the poll's is ~0.5 s; 250 ms
// separates them with room for a loaded machine.
func TestStopReturnsWhenServeDoes(t *testing.T) {
	pool := upstream.NewPool(staticRes{}, []string{"order"}, upstream.ClientOptions{})
	tb, err := route.Parse("/api/v1/orders=order", 300*time.Millisecond, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := freeport.Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Addr: addrs[0], Proxy: proxy.New(proxy.Options{Table: tb, Upstreams: pool}), Endpoints: pool,
		Admin: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, AdminPaths: []string{"/healthz"}})
	served := make(chan time.Time, 1)
	go func() {
		if err := s.Serve(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		served <- time.Now()
	}()
	var idle net.Conn // a keep-alive client, idle as Stop begins
	for range 250 {
		if idle, err = net.Dial("tcp", addrs[0]); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if idle == nil {
		t.Fatalf("server did not start: %v", err)
	}
	defer idle.Close()
	_, _ = io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
	var r fasthttp.Response
	br := bufio.NewReader(idle)
	if err := r.Read(br); err != nil || r.StatusCode() != 200 {
		t.Fatalf("healthz: %d %v", r.StatusCode(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped := time.Now()
	select {
	case at := <-served:
		if gap := stopped.Sub(at); gap > 250*time.Millisecond {
			t.Fatalf("Stop returned %v after Serve: it waited for a poll, not for the engine", gap.Round(time.Millisecond))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop returned, Serve did not")
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the idle client's connection is still open after Stop")
	}
}
