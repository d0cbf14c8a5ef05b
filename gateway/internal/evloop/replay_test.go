package evloop

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/retry"
)

// outcomeLog is a breaker that admits every attempt and records what each
// was reported as.
type outcomeLog struct {
	mu  sync.Mutex
	got []breaker.Outcome
}

func (b *outcomeLog) Admit() (func(breaker.Outcome), error) {
	return func(o breaker.Outcome) {
		b.mu.Lock()
		b.got = append(b.got, o)
		b.mu.Unlock()
	}, nil
}

func (b *outcomeLog) failures() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, o := range b.got {
		if o != breaker.Success {
			n++
		}
	}
	return n
}

// takeLog is a retry budget that allows every retry and counts them.
type takeLog struct{ taken atomic.Int64 }

func (*takeLog) RequestAt(time.Time)              {}
func (b *takeLog) Take() (retry.Withdrawal, bool) { b.taken.Add(1); return retry.Withdrawal{}, true }

// droppingUpstream answers every request it reads in full (counted in
// answered). Once armed, the connection of the next request it answers then
// reads the first bytes of the request after it and closes without
// answering, with a reset when reset is set (counted in dropped): the race
// an upstream's keep-alive idle timeout makes when it fires as the gateway
// sends on that connection, with its window held open.
func droppingUpstream(t *testing.T, reset bool) (addr string, armed *atomic.Bool, answered, dropped *atomic.Int64) {
	armed, answered, dropped = new(atomic.Bool), new(atomic.Int64), new(atomic.Int64)
	addr = upstreamtest.Raw(t, func(w io.Writer, req *http.Request) {
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		// Disarmed before the answer leaves: the test arms the next
		// round once it has that answer.
		drop := armed.CompareAndSwap(true, false)
		answered.Add(1)
		if body := req.Method + " " + req.URL.Path; req.Method == http.MethodHead {
			_, _ = fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		} else {
			upstreamtest.OK(w, body)
		}
		if !drop {
			return
		}
		c := w.(*net.TCPConn)
		if n, err := c.Read(make([]byte, 64<<10)); n == 0 || err != nil {
			t.Errorf("the armed connection read %d bytes of the next request: %v", n, err)
		}
		dropped.Add(1) // before the close, which the gateway may answer at once
		if reset {
			_ = c.SetLinger(0)
		}
		_ = c.Close()
	})
	return addr, armed, answered, dropped
}

// A request sent on a pooled connection at the moment the upstream closes it
// (its keep-alive idle timeout firing as the request arrives) and failed
// before any byte of an answer came is sent again on a new connection when
// that is safe (RFC 9112 §9.3.1): an idempotent method (GET, HEAD, OPTIONS,
// PUT, DELETE), or a request with Idempotency-Key on a route whose upstream
// honours the key. It was a 502, or, for what the chain retries, a retry
// spent from the budget and a failure counted by the breaker against an
// upstream that had failed at nothing. A POST without a key may have been
// processed and is still not resent (502), nor is a keyed one on a route
// whose upstream ignores the key. Both transports are driven here, over
// real sockets: the fasthttp one through proxy.Handle, as run.go serves it.
func TestRequestCaughtByTheUpstreamsIdleCloseIsResent(t *testing.T) {
	transports := []struct {
		name  string
		start func(t *testing.T, pool *upstream.Pool, o proxy.Options) func(raw string) *fasthttp.Response
	}{{"event loop", loopClient}, {"fasthttp", handleClient}}
	for _, tr := range transports {
		for _, reset := range []bool{false, true} {
			name := tr.name + "/FIN"
			if reset {
				name = tr.name + "/RST"
			}
			t.Run(name, func(t *testing.T) {
				up, armed, answered, dropped := droppingUpstream(t, reset)
				pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
				br, budget := &outcomeLog{}, &takeLog{}
				svc := pool.Service("order")
				svc.Breaker, svc.Budget = br, budget
				do := tr.start(t, pool, proxy.Options{
					Dynamic: func() proxy.Dynamic { return proxy.Dynamic{KeyedRetry: map[string]bool{"orders": true}} },
				})
				for _, tc := range []struct {
					raw    string
					resent bool
				}{
					{"GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", true},
					{"HEAD /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", true},
					{"PUT /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}", true},
					{"DELETE /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", true},
					{"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: k1\r\nContent-Length: 2\r\n\r\n{}", true},
					{"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}", false},
					{"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: k2\r\nContent-Length: 2\r\n\r\n{}", false},
					{"PATCH /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}", false},
				} {
					line, _, _ := strings.Cut(tc.raw, " HTTP/1.1")
					if strings.Contains(tc.raw, "Idempotency-Key") {
						line += " (keyed)"
					}
					armed.Store(true)
					if r := do("GET /api/v1/orders/warm HTTP/1.1\r\nHost: gw\r\n\r\n"); r.StatusCode() != 200 {
						t.Fatalf("warm-up before %s: %d %s", line, r.StatusCode(), r.Body())
					}
					a0, d0, f0, t0 := answered.Load(), dropped.Load(), br.failures(), budget.taken.Load()
					r := do(tc.raw)
					if d := dropped.Load() - d0; d != 1 {
						t.Fatalf("%s: the upstream dropped %d connections as it arrived; the test proves nothing", line, d)
					}
					got := answered.Load() - a0
					switch {
					case tc.resent && (r.StatusCode() != 200 || got != 1):
						t.Errorf("%s caught by the upstream's idle close: %d %q, answered %d times; want 200, resent once on a new connection",
							line, r.StatusCode(), r.Body(), got)
					case !tc.resent && (r.StatusCode() != 502 || got != 0):
						t.Errorf("%s caught by the upstream's idle close: %d, answered %d times; want 502, never resent (it may have been processed)",
							line, r.StatusCode(), got)
					}
					if tc.resent {
						if n := br.failures() - f0; n != 0 {
							t.Errorf("%s: the breaker was told of %d failures: the upstream failed at nothing", line, n)
						}
						if n := budget.taken.Load() - t0; n != 0 {
							t.Errorf("%s: %d retries taken from the budget for a resend of a request never answered", line, n)
						}
					}
				}
			})
		}
	}
}

// loopClient serves the order and product routes from pool on one event
// loop and returns a function that sends a request on one keep-alive
// client connection and reads its answer.
func loopClient(t *testing.T, pool *upstream.Pool, o proxy.Options) func(raw string) *fasthttp.Response {
	o.Table = ordersAndProducts(t)
	addr, _ := startServerOn(t, o, Options{MaxBodyBytes: 1 << 10, Loops: 1}, pool)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	rd := bufio.NewReader(c)
	return func(raw string) *fasthttp.Response {
		t.Helper()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		r := &fasthttp.Response{SkipBody: strings.HasPrefix(raw, "HEAD ")}
		if err := r.Read(rd); err != nil {
			t.Fatal(err)
		}
		return r
	}
}

// handleClient is loopClient for the fasthttp transport: each request goes
// through proxy.Handle, over pool's HostClients.
func handleClient(t *testing.T, pool *upstream.Pool, o proxy.Options) func(raw string) *fasthttp.Response {
	o.Table, o.Upstreams = ordersAndProducts(t), pool
	p := proxy.New(o)
	peer := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 4000}
	return func(raw string) *fasthttp.Response {
		t.Helper()
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		ctx.Init(&req, peer, nil)
		p.Handle(&ctx)
		r := &fasthttp.Response{}
		ctx.Response.CopyTo(r)
		return r
	}
}

// ordersAndProducts routes both prefixes to the order service, with a 5 s
// timeout; neither honours Idempotency-Key but for the dynamic config's say.
func ordersAndProducts(t *testing.T) *route.Table {
	tb, err := route.Parse("/api/v1/orders=order,/api/v1/products=order", 5*time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// Of an endpoint's idle connections the fasthttp transport's pool hands out
// the one last used, as the event loop does (its pool's idle list is a
// stack) and as Go's Transport does. fasthttp's default hands out the one
// idle longest, the likeliest to be closed by the upstream's keep-alive idle
// timeout as the request arrives (a resend, or a 502 for a POST), and keeps
// every connection in rotation, so that none stays unused long enough for
// the pool's own idle timeout to close it first. Two connections go idle
// one after the other here; the next request must go on the later one.
func TestPooledConnectionLastUsedIsTakenFirst(t *testing.T) {
	var (
		mu    sync.Mutex
		conns = map[string]string{} // request path -> the connection it came on
	)
	gates := map[string]chan struct{}{"/api/v1/orders/a": make(chan struct{}), "/api/v1/orders/b": make(chan struct{})}
	arrived := make(chan struct{}, 2)
	up := upstreamtest.Raw(t, func(w io.Writer, req *http.Request) {
		mu.Lock()
		conns[req.URL.Path] = w.(net.Conn).RemoteAddr().String()
		mu.Unlock()
		if g := gates[req.URL.Path]; g != nil {
			arrived <- struct{}{}
			<-g
		}
		upstreamtest.OK(w, req.URL.Path)
	})
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
	do := handleClient(t, pool, proxy.Options{})
	done := map[string]chan int{}
	for _, path := range []string{"/api/v1/orders/a", "/api/v1/orders/b"} {
		ch := make(chan int, 1)
		done[path] = ch
		go func() { ch <- do("GET " + path + " HTTP/1.1\r\nHost: gw\r\n\r\n").StatusCode() }()
	}
	for range 2 { // both at the upstream at once: on two connections
		<-arrived
	}
	for _, path := range []string{"/api/v1/orders/a", "/api/v1/orders/b"} {
		close(gates[path])
		if s := <-done[path]; s != 200 {
			t.Fatalf("GET %s: %d, want 200", path, s)
		}
	}
	if r := do("GET /api/v1/orders/c HTTP/1.1\r\nHost: gw\r\n\r\n"); r.StatusCode() != 200 {
		t.Fatalf("GET /api/v1/orders/c: %d %s", r.StatusCode(), r.Body())
	}
	mu.Lock()
	defer mu.Unlock()
	if older, newer := conns["/api/v1/orders/a"], conns["/api/v1/orders/b"]; older == newer || conns["/api/v1/orders/c"] != newer {
		t.Errorf("a request after two connections went idle went on %s; want %s, the one last used, not %s, idle longer",
			conns["/api/v1/orders/c"], newer, older)
	}
}

// A resent request waits for the connection dialled for it, not the first
// one to come free: an upstream in a graceful shutdown (Go's Server.Shutdown)
// closes each connection as soon as its answer has left, without
// Connection: close when the answer's head had gone before, so a connection
// just handed back could be closed as the resend arrived on it, which then
// failed for good (a 502 for a DELETE). The dial is held up here by the
// upstream's full accept queue, so that the other connection's answer and
// close come while the resend waits.
func TestResendWaitsForANewConnection(t *testing.T) {
	ln := listenBacklog0(t)
	addr := ln.Addr().String()
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: addr, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
	o := proxy.Options{Table: ordersAndProducts(t)}
	gw, _ := startServerOn(t, o, Options{MaxBodyBytes: 1 << 10, Loops: 1}, pool)

	type arrival struct {
		c   net.Conn
		req *http.Request
	}
	arrivals, done := make(chan arrival, 4), make(chan struct{})
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		close(done)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	// accept takes the next connection, whose requests then arrive.
	accept := func() error {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		go func() {
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				select {
				case arrivals <- arrival{c, req}:
				case <-done:
					return
				}
			}
		}()
		return nil
	}
	answer := func(c net.Conn, body string) {
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	next := func(what string) arrival {
		t.Helper()
		select {
		case a := <-arrivals:
			return a
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never reached the upstream", what)
			return arrival{}
		}
	}
	client := func(raw string) <-chan *fasthttp.Response {
		out := make(chan *fasthttp.Response, 1)
		c, err := net.Dial("tcp", gw)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		go func() {
			r := &fasthttp.Response{}
			if err := r.Read(bufio.NewReader(c)); err != nil {
				r.SetStatusCode(0)
				r.SetBodyString(err.Error())
			}
			out <- r
		}()
		return out
	}

	// Two pooled connections, both having answered.
	w1, w2 := client("GET /api/v1/orders/w1 HTTP/1.1\r\nHost: gw\r\n\r\n"), client("GET /api/v1/orders/w2 HTTP/1.1\r\nHost: gw\r\n\r\n")
	for range 2 {
		if err := accept(); err != nil {
			t.Fatal(err)
		}
	}
	// Both at the upstream before either is answered: on two connections.
	a1, a2 := next("a warm-up request"), next("a warm-up request")
	answer(a1.c, "warm")
	answer(a2.c, "warm")
	for _, w := range []<-chan *fasthttp.Response{w1, w2} {
		if r := <-w; r.StatusCode() != 200 {
			t.Fatalf("warm-up: %d %s", r.StatusCode(), r.Body())
		}
	}
	// Nothing more is accepted until the filler leaves the queue.
	filler, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()

	slow := client("GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
	y := next("the slow request")
	del := client("DELETE /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
	x := next("the DELETE")
	if x.c == y.c {
		t.Fatal("the DELETE went on the busy connection")
	}
	_ = x.c.Close() // the idle timeout firing as the DELETE arrived
	waitFor(t, "the resend's dial", func() bool { return synSentTo(t, ln.Addr().(*net.TCPAddr).Port) })
	// The slow answer, and the connection closed after it.
	answer(y.c, "slow")
	_ = y.c.Close()
	if r := <-slow; r.StatusCode() != 200 {
		t.Fatalf("the slow request: %d %s", r.StatusCode(), r.Body())
	}
	// The filler accepted unblocks the dials (the other connection's close
	// asked for one more); the DELETE is answered on whichever it came on.
	go func() {
		for accept() == nil {
		}
	}()
	go func() {
		for {
			select {
			case a := <-arrivals:
				answer(a.c, a.req.Method)
			case <-done:
				return
			}
		}
	}()
	if r := <-del; r.StatusCode() != 200 {
		t.Fatalf("DELETE caught by an idle close, resent while another connection answered and closed: %d %s; want 200 on the connection dialled for it",
			r.StatusCode(), r.Body())
	}
}

// listenBacklog0 listens on loopback with an accept queue of one
// connection: the next connection's SYN is dropped (and retried by the
// dialler a second later) while one waits to be accepted.
func listenBacklog0(t *testing.T) net.Listener {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err = syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
		err = syscall.Listen(fd, 0)
	}
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "upstream")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// synSentTo says whether a connection to port on loopback is being opened
// (SYN_SENT in /proc/net/tcp).
func synSentTo(t *testing.T, port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[2], want) && f[3] == "02" {
			return true
		}
	}
	return false
}
