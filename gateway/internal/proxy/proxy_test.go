package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/authn"
	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/retry"
)

func jsonValid(b []byte) bool { return json.Valid(b) }

// fakeUpstream is a real fasthttp server on loopback that echoes what it got.
type fakeUpstream struct {
	addr   string
	hits   atomic.Int64
	status atomic.Int64
	last   atomic.Pointer[fasthttp.RequestHeader]
}

func startUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{addr: ln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		u.hits.Add(1)
		var h fasthttp.RequestHeader
		ctx.Request.Header.CopyTo(&h)
		u.last.Store(&h)
		if s := u.status.Load(); s != 0 {
			ctx.SetStatusCode(int(s))
		}
		ctx.SetBodyString("upstream:" + string(ctx.Request.Header.RequestURI()))
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return u
}

type staticRes map[string][]upstream.Instance

func (s staticRes) Instances(svc string) []upstream.Instance { return s[svc] }

type fakeAuth struct{}

func (fakeAuth) Subject(_ context.Context, tok []byte) (string, error) {
	switch string(tok) {
	case "":
		return "", authn.ErrNoToken
	case "good":
		return "user-7", nil
	}
	return "", errors.New("bad token")
}

type denyAll struct{}

func (denyAll) Allow(context.Context, []byte) (quota.Decision, error) {
	return quota.Decision{Limit: 5, RetryAfter: 1500 * time.Millisecond, ResetAfter: 3 * time.Second, Window: 10 * time.Second}, nil
}

type openBreaker struct{}

func (openBreaker) Admit() (func(breaker.Outcome), error) { return nil, errors.New("open") }

func newTestProxy(t testing.TB, o Options, ups ...*fakeUpstream) (*Proxy, *upstream.Pool) {
	t.Helper()
	var ins []upstream.Instance
	for i, u := range ups {
		ins = append(ins, upstream.Instance{ID: string(rune('a' + i)), Addr: u.addr, Version: "v1"})
	}
	pool := upstream.NewPool(staticRes{"order": ins}, []string{"order"}, upstream.ClientOptions{})
	tb, err := route.Parse("/api/v1/orders=order,/api/v1/products=order", time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	o.Table, o.Upstreams = tb, pool
	return New(o), pool
}

func serve(p *Proxy, raw string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	_ = req.Read(bufioReader(raw))
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 4000}, nil)
	p.Handle(&ctx)
	return &ctx
}

func TestHandleForwardsCleanPathAndVerifiedUser(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}}, up)
	ctx := serve(p, "GET /api//v1/./orders/7?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nX-User-ID: admin\r\n\r\n")
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if got := string(ctx.Response.Body()); got != "upstream:/api/v1/orders/7?x=1" {
		t.Fatalf("upstream saw %q", got)
	}
	h := up.last.Load()
	if got := string(h.Peek(UserHeader)); got != "user-7" {
		t.Fatalf("X-User-ID upstream = %q", got)
	}
	if got := string(h.Peek("X-Forwarded-For")); got != "203.0.113.5" {
		t.Fatalf("XFF = %q", got)
	}
	if ms := string(h.Peek(TimeoutHeader)); ms == "" || ms == "0" {
		t.Fatalf("no deadline passed upstream: %q", ms)
	}
	// The answer's names are as the upstream sent them (no normalising):
	// the gateway's own are in canonical form.
	if len(ctx.Response.Header.Peek("X-Request-Id")) == 0 || string(h.Peek(RequestIDHeader)) != string(ctx.Response.Header.Peek("X-Request-Id")) {
		t.Fatal("request id not generated, forwarded and echoed")
	}
}

func TestHandleRejects(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}}, up)
	cases := []struct {
		raw    string
		status int
		kind   string
	}{
		{"GET /api/../../etc HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "bad-path"},
		{"GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n", 404, "no-route"},
		{"GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\n\r\n", 401, "unauthenticated"},
		{"GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer forged\r\n\r\n", 401, "invalid-token"},
		{"GET /api/v1/products/%2e%2e/orders HTTP/1.1\r\nHost: gw\r\n\r\n", 401, "unauthenticated"},
		{"GET /api/v1/products HTTP/1.1\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nX-User-ID : admin\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: a\r\nhost: gw\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nCONTENT-TYPE: application/json\r\nContent-Length: 2\r\n\r\n{}", 400, "malformed-request"},
		{"GET * HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "bad-path"},
		{"GET http://u@gw/api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "bad-path"},
		{"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{}", 400, "malformed-request"},
		// The gateway does not tunnel: CONNECT is 501 in any target form.
		{"CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n\r\n", 501, "not-implemented"},
		{"CONNECT /api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n", 501, "not-implemented"},
		// A fragment is no part of a request target (RFC 9112 §3.2), in the
		// path or after the query.
		{"GET /api/v1/products#top HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "bad-path"},
		{"GET /api/v1/products?x=1#top HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "bad-path"},
		// Max-Forwards 0 makes the gateway the final recipient of a TRACE
		// (RFC 9110 §7.6.2), which it does not reflect.
		{"TRACE /api/v1/products HTTP/1.1\r\nHost: gw\r\nMax-Forwards: 0\r\n\r\n", 501, "not-implemented"},
		// RFC 9112 §3.2: a Host that is no uri-host[:port] is 400, as the
		// fasthttp server's URI parser answers some of them before the chain.
		{"GET /api/v1/products HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: user@gw\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: gw/x\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: gw:8o\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: :80\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: [gw]\r\n\r\n", 400, "malformed-request"},
		{"GET /api/v1/products HTTP/1.1\r\nHost: g%41w\r\n\r\n", 400, "malformed-request"},
		{"GET http://gw:x/api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "malformed-request"},
		// Versions other than HTTP/1.0 and 1.1 (RFC 9110 §15.6.6), which
		// the parser takes and the chain sent upstream as HTTP/1.1.
		{"GET /api/v1/products HTTP/2.0\r\nHost: gw\r\n\r\n", 505, "version-not-supported"},
		{"GET /api/v1/products HTTP/0.9\r\nHost: gw\r\n\r\n", 505, "version-not-supported"},
		{"GET /api/v1/products HTTP/1.2\r\nHost: gw\r\n\r\n", 505, "version-not-supported"},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "version-not-supported"},
	}
	for _, c := range cases {
		ctx := serve(p, c.raw)
		var prob struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
		}
		if err := json.Unmarshal(ctx.Response.Body(), &prob); err != nil {
			t.Fatalf("%q: body %s", c.raw, ctx.Response.Body())
		}
		if ctx.Response.StatusCode() != c.status || prob.Status != c.status || !strings.HasSuffix(prob.Type, "/"+c.kind) {
			t.Errorf("%q: got %d %s, want %d %s", c.raw, ctx.Response.StatusCode(), prob.Type, c.status, c.kind)
		}
		if string(ctx.Response.Header.ContentType()) != "application/problem+json" {
			t.Errorf("%q: content type %q", c.raw, ctx.Response.Header.ContentType())
		}
		// After a 400 the connection closes: what follows on it may be
		// this request's body as another hop framed it (CL.0 smuggling);
		// after a 505, bytes of another protocol.
		if (c.status == 400 || c.status == 505) && !ctx.Response.ConnectionClose() {
			t.Errorf("%q: %d keeps the connection open", c.raw, c.status)
		}
	}
	if up.hits.Load() != 0 {
		t.Fatalf("rejected requests reached the upstream %d times", up.hits.Load())
	}
	// Public route without a token passes.
	if ctx := serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n"); ctx.Response.StatusCode() != 200 {
		t.Fatalf("public route: %d", ctx.Response.StatusCode())
	}
	// HTTP/1.0 may omit Host; the upstream request gets the endpoint's
	// (fasthttp's client refused to write it: 502). It goes upstream as
	// HTTP/1.1, so that the upstream keeps the connection, and the server
	// still sees an HTTP/1.0 request when it answers.
	if ctx := serve(p, "GET /api/v1/products HTTP/1.0\r\n\r\n"); ctx.Response.StatusCode() != 200 || string(up.last.Load().Host()) != up.addr {
		t.Fatalf("HTTP/1.0 without Host: %d %s, upstream saw Host %q", ctx.Response.StatusCode(), ctx.Response.Body(), up.last.Load().Host())
	} else if !up.last.Load().IsHTTP11() || ctx.Request.Header.IsHTTP11() {
		t.Fatalf("HTTP/1.0: upstream saw %s, server sees %s", up.last.Load().Protocol(), ctx.Request.Header.Protocol())
	}
}

func TestHandleLimitAnswers429WithHeaders(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{IPLimit: denyAll{}}, up)
	ctx := serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n")
	if ctx.Response.StatusCode() != 429 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	if got := string(ctx.Response.Header.Peek("Retry-After")); got != "2" {
		t.Errorf("Retry-After %q, want 2 (1.5s rounded up)", got)
	}
	if got := string(ctx.Response.Header.Peek("RateLimit")); got != "limit=5, remaining=0, reset=3" {
		t.Errorf("RateLimit %q", got)
	}
	if got := string(ctx.Response.Header.Peek("RateLimit-Policy")); got != "5;w=10" {
		t.Errorf("RateLimit-Policy %q", got)
	}
}

// TestDecorateRateLimitPolicyFollowsLimit: the RateLimit headers replace
// an upstream's, and the RateLimit-Policy value a reused exchange keeps
// formatted is redone when the limit or its window changes (a dynamic
// config change, or another limiter's decision).
func TestDecorateRateLimitPolicyFollowsLimit(t *testing.T) {
	p, _ := newTestProxy(t, Options{}, startUpstream(t))
	var st state
	for _, c := range []struct {
		d          quota.Decision
		rl, policy string
	}{
		{quota.Decision{Limit: 5, Remaining: 2, ResetAfter: time.Second, Window: 10 * time.Second}, "limit=5, remaining=2, reset=1", "5;w=10"},
		{quota.Decision{Limit: 5, Remaining: 1, ResetAfter: time.Second, Window: 10 * time.Second}, "limit=5, remaining=1, reset=1", "5;w=10"},
		{quota.Decision{Limit: 50, Remaining: 9, ResetAfter: 2 * time.Second, Window: 10 * time.Second}, "limit=50, remaining=9, reset=2", "50;w=10"},
		{quota.Decision{Limit: 50, Remaining: 9, ResetAfter: 2 * time.Second, Window: time.Minute}, "limit=50, remaining=9, reset=2", "50;w=60"},
		{quota.Decision{Limit: 7, Remaining: 0, ResetAfter: 3 * time.Second}, "limit=7, remaining=0, reset=3", ""},
	} {
		var resp fasthttp.Response
		resp.Header.Set("RateLimit", "limit=1, remaining=1, reset=1") // the upstream's, replaced
		st.rl, st.rlSet = c.d, true
		p.decorate(&resp, &st)
		if n := len(resp.Header.PeekAll("RateLimit")); n != 1 {
			t.Errorf("%+v: %d RateLimit fields, want 1", c.d, n)
		}
		if got := string(resp.Header.Peek("RateLimit")); got != c.rl {
			t.Errorf("%+v: RateLimit %q, want %q", c.d, got, c.rl)
		}
		if got := string(resp.Header.Peek("RateLimit-Policy")); got != c.policy {
			t.Errorf("%+v: RateLimit-Policy %q, want %q", c.d, got, c.policy)
		}
	}
}

func TestHandleBreakerOpenIs503(t *testing.T) {
	up := startUpstream(t)
	p, pool := newTestProxy(t, Options{}, up)
	pool.Service("order").Breaker = openBreaker{}
	ctx := serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n")
	if ctx.Response.StatusCode() != 503 || !strings.Contains(string(ctx.Response.Body()), "circuit-open") {
		t.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if up.hits.Load() != 0 {
		t.Fatal("open breaker let a request through")
	}
}

// An upstream answer without a final status (fasthttp's client hands back
// a 103 Early Hints as the answer; a status outside 100-599) is a 502, not
// an interim answer after which the client waits for nothing.
func TestHandleUpstreamWithoutFinalStatusIs502(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{}, up)
	for _, status := range []int{103, 199, 600, 999} {
		up.status.Store(int64(status))
		ctx := serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n")
		if ctx.Response.StatusCode() != 502 || !strings.Contains(string(ctx.Response.Body()), "upstream-unreachable") {
			t.Errorf("upstream status %d: %d %s", status, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

type countingBudget struct{ requests, withdrawn atomic.Int64 }

func (b *countingBudget) RequestAt(time.Time) { b.requests.Add(1) }
func (b *countingBudget) Take() (retry.Withdrawal, bool) {
	b.withdrawn.Add(1)
	return retry.Withdrawal{}, true
}

func TestHandleRetriesOnlyIdempotent(t *testing.T) {
	bad, good := startUpstream(t), startUpstream(t)
	bad.status.Store(503)
	p, pool := newTestProxy(t, Options{MaxAttempts: 2}, bad, good)
	budget := &countingBudget{}
	pool.Service("order").Budget = budget
	for range 20 {
		if ctx := serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n"); ctx.Response.StatusCode() != 200 {
			t.Fatalf("GET not retried onto the healthy instance: %d", ctx.Response.StatusCode())
		}
	}
	if budget.withdrawn.Load() == 0 || budget.withdrawn.Load() != bad.hits.Load() {
		t.Fatalf("retries %d, bad hits %d: every failure of a GET should be retried once", budget.withdrawn.Load(), bad.hits.Load())
	}
	b0, g0 := bad.hits.Load(), good.hits.Load()
	for range 20 {
		serve(p, "POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
	}
	if calls := bad.hits.Load() - b0 + good.hits.Load() - g0; calls != 20 {
		t.Fatalf("20 POSTs without Idempotency-Key made %d upstream calls", calls)
	}
}

func TestCORSPreflight(t *testing.T) {
	up := startUpstream(t)
	c := DefaultCORS([]string{"https://shop.example"})
	p, _ := newTestProxy(t, Options{CORS: &c}, up)
	ctx := serve(p, "OPTIONS /api/v1/orders HTTP/1.1\r\nHost: gw\r\nOrigin: https://shop.example\r\nAccess-Control-Request-Method: POST\r\n\r\n")
	if ctx.Response.StatusCode() != 204 || string(ctx.Response.Header.Peek("Access-Control-Allow-Origin")) != "https://shop.example" ||
		!strings.Contains(string(ctx.Response.Header.Peek("Access-Control-Allow-Methods")), "POST") {
		t.Fatalf("preflight: %d %s", ctx.Response.StatusCode(), ctx.Response.Header.String())
	}
	ctx = serve(p, "OPTIONS /api/v1/orders HTTP/1.1\r\nHost: gw\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n\r\n")
	if ctx.Response.StatusCode() != 403 || len(ctx.Response.Header.Peek("Access-Control-Allow-Origin")) != 0 {
		t.Fatalf("foreign preflight: %d", ctx.Response.StatusCode())
	}
	ctx = serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nOrigin: https://shop.example\r\n\r\n")
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("Access-Control-Allow-Origin")) != "https://shop.example" {
		t.Fatalf("simple request: %d %s", ctx.Response.StatusCode(), ctx.Response.Header.String())
	}
	if up.hits.Load() != 1 {
		t.Fatalf("preflights reached the upstream: %d hits", up.hits.Load())
	}
}

// With CORS configured an answer depends on the request's Origin, so every
// answer says so, also one to a request without Origin (Fetch standard,
// "CORS protocol and HTTP caches"): without Vary: Origin a shared cache
// kept that answer, which has no Access-Control-Allow-Origin, and gave it
// to browsers asking from an allowed origin, which then refused it.
func TestCORSAnswersVaryByOriginEvenWithoutOne(t *testing.T) {
	up := startUpstream(t)
	for _, origins := range [][]string{{"https://shop.example"}, {"*"}} {
		c := DefaultCORS(origins)
		p, _ := newTestProxy(t, Options{CORS: &c}, up)
		for _, raw := range []string{
			"GET /api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n",
			"GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nOrigin: https://shop.example\r\n\r\n",
			"GET /api/v1/nothing HTTP/1.1\r\nHost: gw\r\n\r\n", // a local answer (404)
		} {
			ctx := serve(p, raw)
			var vary []string
			for _, v := range ctx.Response.Header.PeekAll("Vary") {
				vary = append(vary, string(v))
			}
			if !slices.Contains(vary, "Origin") {
				t.Errorf("origins %q, %q: %d with Vary %q, want Origin among them", origins, raw, ctx.Response.StatusCode(), vary)
			}
		}
	}
	// Without CORS the answer does not depend on Origin.
	p, _ := newTestProxy(t, Options{}, up)
	if v := serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nOrigin: https://shop.example\r\n\r\n").Response.Header.PeekAll("Vary"); len(v) != 0 {
		t.Errorf("no CORS: Vary %q", v)
	}
}

func TestErrorHandlerStatuses(t *testing.T) {
	cases := []struct {
		err    error
		status int
	}{
		{fasthttp.ErrBodyTooLarge, 413},
		{&fasthttp.ErrSmallBuffer{}, 431},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, 408},
		{errors.New("cannot parse"), 400},
	}
	for _, c := range cases {
		var ctx fasthttp.RequestCtx
		ErrorHandler(&ctx, c.err)
		if ctx.Response.StatusCode() != c.status || !json.Valid(ctx.Response.Body()) || !ctx.Response.ConnectionClose() {
			t.Errorf("%v: %d %s", c.err, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// After an interim answer the final one is still on its way: the
// connection must not carry the next request, whose client would get it.
func TestHandleInterimAnswerDropsTheConnection(t *testing.T) {
	up := upstreamtest.Raw(t, func(w io.Writer, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/hints") {
			_, _ = io.WriteString(w, "HTTP/1.1 103 Early Hints\r\n\r\n")
			time.Sleep(100 * time.Millisecond) // the next request is sent meanwhile
		}
		upstreamtest.OK(w, "upstream:"+req.URL.Path)
	})
	p, _ := newTestProxy(t, Options{MaxAttempts: 1}, &fakeUpstream{addr: up})
	if ctx := serve(p, "GET /api/v1/products/hints HTTP/1.1\r\nHost: gw\r\n\r\n"); ctx.Response.StatusCode() != 502 {
		t.Fatalf("interim answer: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	ctx := serve(p, "GET /api/v1/products/next HTTP/1.1\r\nHost: gw\r\n\r\n")
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Body()) != "upstream:/api/v1/products/next" {
		t.Fatalf("the request after it: %d %q, want its own answer", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}

// The fasthttp transport forwards the Host the client sent, in its case:
// upstream virtual hosts and request signatures see what the client signed.
// (fasthttp's client wrote the host of the parsed URI, lower-cased.)
func TestHandleKeepsHostAsSent(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{}, up)
	for _, host := range []string{"Api.Example.COM:8080", "GW", "[::1]:8080", "[2001:DB8::1]", "10.0.0.1", "gw:", "a-b_c~d!$&'()*+,;=e"} {
		ctx := serve(p, "GET /api/v1/products HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		if ctx.Response.StatusCode() != 200 || string(up.last.Load().Host()) != host {
			t.Fatalf("Host %q: %d, upstream saw %q", host, ctx.Response.StatusCode(), up.last.Load().Host())
		}
	}
}

// RFC 9110 §7.6.2: an OPTIONS or TRACE request with Max-Forwards 0 stops at
// the gateway; with more, the upstream gets one less. Other methods ignore
// the field.
func TestMaxForwards(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{}, up)
	ctx := serve(p, "OPTIONS /api/v1/products HTTP/1.1\r\nHost: gw\r\nMax-Forwards: 0\r\n\r\n")
	if ctx.Response.StatusCode() != 204 || string(ctx.Response.Header.Peek("Allow")) != allowMethods || up.hits.Load() != 0 {
		t.Fatalf("OPTIONS, Max-Forwards 0: %d Allow %q, %d upstream hits", ctx.Response.StatusCode(), ctx.Response.Header.Peek("Allow"), up.hits.Load())
	}
	for _, c := range []struct{ method, sent, want string }{
		{"OPTIONS", "3", "2"}, {"TRACE", "1", "0"}, {"TRACE", "007", "6"},
		{"GET", "0", "0"}, {"OPTIONS", "x", "x"}, {"OPTIONS", "", ""},
	} {
		field := ""
		if c.sent != "" {
			field = "Max-Forwards: " + c.sent + "\r\n"
		}
		ctx := serve(p, c.method+" /api/v1/products HTTP/1.1\r\nHost: gw\r\n"+field+"\r\n")
		if got := string(up.last.Load().Peek("Max-Forwards")); ctx.Response.StatusCode() != 200 || got != c.want {
			t.Errorf("%s, Max-Forwards %q: %d, upstream saw %q, want %q", c.method, c.sent, ctx.Response.StatusCode(), got, c.want)
		}
	}
}

// AdminPath is the target as sent, less the query: what both transports
// match /healthz, /readyz and /metrics against.
func TestAdminPath(t *testing.T) {
	for _, c := range []struct{ target, want string }{
		{"/healthz", "/healthz"}, {"/metrics?name=x", "/metrics"}, {"http://gw/readyz?x", "/readyz"},
		{"//healthz", "//healthz"}, {"/%68ealthz", "/%68ealthz"}, {"/healthz#x", "/healthz#x"}, {"http://gw", ""}, {"*", ""},
	} {
		var h fasthttp.RequestHeader
		h.SetRequestURI(c.target)
		if got := string(AdminPath(&h)); got != c.want {
			t.Errorf("%q: %q, want %q", c.target, got, c.want)
		}
	}
	// A version the gateway does not speak has no admin path: the chain
	// answers it 505 and closes.
	for _, proto := range []string{"HTTP/1.2", "HTTP/2.0", "HTTP/0.9"} {
		var h fasthttp.RequestHeader
		h.SetRequestURI("/healthz")
		h.SetProtocol(proto)
		if got := AdminPath(&h); got != nil {
			t.Errorf("/healthz %s: %q, want none", proto, got)
		}
	}
	var h fasthttp.RequestHeader
	h.SetRequestURI("/healthz")
	h.SetProtocol("HTTP/1.0")
	if got := string(AdminPath(&h)); got != "/healthz" {
		t.Errorf("/healthz HTTP/1.0: %q, want /healthz", got)
	}
}

// AdminFramed takes what Begin takes as it is and leaves the rest to it.
func TestAdminFramed(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want bool
	}{
		{"GET /healthz HTTP/1.1\r\nHost: 10.0.0.7:8080\r\n\r\n", true},
		{"GET /healthz HTTP/1.0\r\n\r\n", true},
		{"GET http://gw/healthz HTTP/1.1\r\nHost: other\r\n\r\n", true},
		{"POST /healthz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length : 5\r\n\r\n", false},
		{"POST /healthz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\n\r\n", false},
		{"POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: gw\r\n\r\n", false},
		{"GET /healthz HTTP/1.1\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nHost: gw\r\n\r\n", false},
		{"GET /healthz HTTP/1.1\r\n\r\n", false},
		{"GET /healthz HTTP/1.1\r\nHost: user@gw\r\n\r\n", false},
		{"CONNECT /healthz HTTP/1.1\r\nHost: gw\r\n\r\n", false},
		// obs-fold (scanLines), also as the last line and a short one.
		{"GET /healthz HTTP/1.1\r\nHost: gw\r\nX: y\r\n Content-Length: 48\r\nZ: z\r\n\r\n", false},
		{"GET /healthz HTTP/1.1\r\nHost: gw\r\nX: y\r\n\t4\r\n\r\n", false},
		{"GET /healthz HTTP/1.1\r\nHost: gw\r\nX: y \r\nZ:\t1\r\n\r\n", true},
	} {
		var req fasthttp.Request
		if err := req.Read(bufioReader(c.raw)); err != nil {
			t.Fatalf("%q: %v", c.raw, err)
		}
		if got := AdminFramed(&req.Header); got != c.want {
			t.Errorf("%q: %v, want %v", c.raw, got, c.want)
		}
	}
}

// AdminFramed and Begin must not drift apart: what the admin paths answer
// outside the chain is exactly what Begin would forward as it is (200 from
// the upstream, connection kept; for a chunked request, closed, which
// AdminTrailer does on the admin paths). Anything else goes to the chain
// on those paths too. Heads are compared on a routed path, as AdminFramed
// reads no path.
func TestAdminFramedAgreesWithBegin(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{}, up)
	// The one sound chunked head: closed by both (AdminTrailer on the
	// admin paths); the ambiguous ones Begin answers and closes too.
	const chunkedAlone = "POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	for _, raw := range []string{
		"GET /api/v1/products HTTP/1.1\r\nHost: 10.0.0.7:8080\r\n\r\n",
		"GET /api/v1/products HTTP/1.0\r\n\r\n",
		"GET http://gw/api/v1/products HTTP/1.1\r\nHost: other\r\n\r\n",
		"GET http://gw/api/v1/products HTTP/1.1\r\n\r\n",
		"GET http://gw/api/v1/products HTTP/1.0\r\n\r\n",
		"GET http://gw:80/api/v1/products HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		chunkedAlone,
		"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Length : 5\r\n\r\n",
		"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\n\r\n",
		"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /api/v1/products HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /api/v1/products HTTP/1.1\r\nHost: a\r\nHost: gw\r\n\r\n",
		"GET /api/v1/products HTTP/1.1\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nHost: gw\r\n\r\n",
		"GET /api/v1/products HTTP/1.1\r\n\r\n",
		"GET /api/v1/products HTTP/1.1\r\nHost: user@gw\r\n\r\n",
		"GET /api/v1/products HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
		"CONNECT /api/v1/products HTTP/1.1\r\nHost: gw\r\n\r\n",
	} {
		var req fasthttp.Request
		if err := req.Read(bufioReader(raw)); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		framed := AdminFramed(&req.Header)
		ctx := serve(p, raw)
		forwarded := ctx.Response.StatusCode() == fasthttp.StatusOK && ctx.Response.ConnectionClose() == (raw == chunkedAlone)
		if framed != forwarded {
			t.Errorf("%q: AdminFramed %v, but Begin answered %d (closes %v)", raw, framed, ctx.Response.StatusCode(), ctx.Response.ConnectionClose())
		}
	}
}

// RFC 9112 §6.3: after a request framed by both Transfer-Encoding and
// Content-Length the connection closes, and §6.1 has the same for an
// HTTP/1.0 request with a transfer coding. A chunked request alone closes it
// too: the fasthttp server cannot tell a trailer section ended by a bare LF,
// after which a hop in front may see no request where the parser sees one
// (checkHead's closes). It kept the connection before.
func TestHandleClosesAfterChunkedFraming(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{}, up)
	const chunked = "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
	for _, c := range []struct {
		raw    string
		status int
		close  bool
	}{
		{"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n" + chunked, 200, true},
		{"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\ncontent-length: 9\r\n" + chunked, 200, true},
		{"POST /api/v1/products HTTP/1.0\r\nHost: gw\r\nConnection: keep-alive\r\n" + chunked, 200, true},
		{"POST /nowhere HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n" + chunked, 404, true},
		{"POST /api/v1/products HTTP/1.1\r\nContent-Length: 2\r\n" + chunked, 400, true},
		{"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\n" + chunked, 200, true},
		{"POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}", 200, false},
		// An empty chunked body: the parser leaves a length of 0, not -1.
		{"GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, true},
		{"GET /api/v1/products HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, true},
		{"GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, true},
		// Not framing, but closed too: after a refused CONNECT come the
		// tunnel's bytes.
		{"CONNECT gw:443 HTTP/1.1\r\nHost: gw\r\n\r\n", 501, true},
	} {
		ctx := serve(p, c.raw)
		if ctx.Response.StatusCode() != c.status || ctx.Response.ConnectionClose() != c.close {
			t.Errorf("%q: %d, closes %v, want %v", c.raw, ctx.Response.StatusCode(), ctx.Response.ConnectionClose(), c.close)
		}
	}
}

// fieldLines counts a field's raw lines in any letter case, the first line
// too, and stops at most.
func TestFieldLines(t *testing.T) {
	for _, c := range []struct {
		raw, name  string
		most, want int
	}{
		{"Host: a\r\nX: 1\r\nHOST: b\r\n", "host:", 2, 2},
		{"Host: a\r\nhost: b\r\nhost: c\r\n", "host:", 2, 2},
		{"X-Host: a\r\nHosts: b\r\nHost : c\r\n", "host:", 2, 0},
		{"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", "content-length:", 1, 1},
		{"Transfer-Encoding: chunked\r\ncontent-length:2", "content-length:", 1, 1},
		{"Transfer-Encoding: chunked\r\n", "content-length:", 1, 0},
		{"", "host:", 2, 0},
	} {
		if got := fieldLines([]byte(c.raw), c.name, c.most); got != c.want {
			t.Errorf("fieldLines(%q, %q, %d) = %d, want %d", c.raw, c.name, c.most, got, c.want)
		}
	}
}

// scanLines counts Host, Transfer-Encoding and Content-Type lines as fieldLines would,
// in one pass, each up to two.
func TestFramingLines(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		chunked bool
	}{
		{"Host: a\r\nX: 1\r\nHOST: b\r\n", false},
		{"Host: a\r\nhost: b\r\nhost: c\r\nTransfer-Encoding: chunked\r\n", true},
		{"X-Host: a\r\nHosts: b\r\nHost : c\r\nTransfer-Encodings: x\r\n", false},
		{"transfer-encoding: chunked\r\nTransfer-Encoding: identity\r\nTRANSFER-ENCODING: x\r\nHost: h", false},
		{"Transfer-Encoding:\r\n chunked\r\nHost: a\r\n", false},
		{"Transfer-Encoding:", false},
		{"Transfer-Encoding: \tCHUNKED \r\nHost: a\r\n", true},
		{"Host: a\nTransfer-Encoding: chunked", true},
		{"Transfer-Encoding: identity\r\n", false},
		{"Transfer-Encoding: gzip, chunked\r\n", false},
		{"Content-Type: a\r\nContent-Length: 1\r\ncontent-TYPE: b\r\nContent-Types: c\r\nContent-Type: d\r\n", false},
		{"X-Content-Type: a\r\nContent-Type : b\r\nContent-Type:", false},
		{"", false},
	} {
		raw := tc.raw
		l := scanLines([]byte(raw))
		hosts, codings, types, chunked := l.hosts, l.codings, l.types, l.chunked
		if codings == 1 && chunked != tc.chunked {
			t.Errorf("%q: chunked %v, want %v", raw, chunked, tc.chunked)
		}
		if want := fieldLines([]byte(raw), "host:", 2); hosts != want {
			t.Errorf("%q: %d Host lines, want %d", raw, hosts, want)
		}
		if want := fieldLines([]byte(raw), "transfer-encoding:", 2); codings != want {
			t.Errorf("%q: %d Transfer-Encoding lines, want %d", raw, codings, want)
		}
		if want := fieldLines([]byte(raw), "content-type:", 2); types != want {
			t.Errorf("%q: %d Content-Type lines, want %d", raw, types, want)
		}
	}
}

// scanLines counts the User-Agent and Cookie lines whose value is empty or
// white space, in any letter case, and no other line.
func TestScanLinesEmptyFields(t *testing.T) {
	for _, tc := range []struct {
		raw        string
		ua, cookie int
	}{
		{"User-Agent:\r\nCookie: \t\r\nHost: a\r\n", 1, 1},
		{"user-agent: \r\nUSER-AGENT:\r\ncookie:\r\nCOOKIE:\r\nCookie: a=1\r\n", 2, 2},
		{"User-Agent: x\r\nCookie: a=1\r\nUser-Agents:\r\nCookies:\r\nX-Cookie:\r\n", 0, 0},
		{"Content-Type:\r\nUser-Agent :\r\nCookie", 0, 0},
		{"Host: a\nUser-Agent:\nCookie:", 1, 1},
		{"Cookie:\r\n", 0, 1},
		{"", 0, 0},
	} {
		l := scanLines([]byte(tc.raw))
		if l.emptyUA != tc.ua || l.emptyCookie != tc.cookie {
			t.Errorf("%q: %d empty User-Agent, %d empty Cookie lines, want %d, %d", tc.raw, l.emptyUA, l.emptyCookie, tc.ua, tc.cookie)
		}
	}
}

// HeaderReceived leaves the fasthttp server's "Expect: 100-continue" check
// with the answer ExpectsContinue gives: the field as the server knows it
// when the client waits for a 100, in another letter case from an HTTP/1.0
// client (Begin drops it when it is the only Expect field), and the fields
// after the first as they came.
func TestHeaderReceivedExpect(t *testing.T) {
	for _, tc := range []struct {
		head, want string
		continues  bool
	}{
		{"POST /a HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "100-continue", true},
		{"POST /a HTTP/1.1\r\nHost: gw\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", "100-continue", true},
		{"POST /a HTTP/1.1\r\nHost: gw\r\nExpect: 100-CONTINUE\r\nTransfer-Encoding: chunked\r\n\r\n", "100-continue", true},
		{"POST /a HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "100-Continue", false},
		{"GET /a HTTP/1.0\r\nExpect: 100-Continue\r\n\r\n", "100-Continue", false},
		{"POST /a HTTP/1.1\r\nHost: gw\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n", "something-else", false},
		{"POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\n", "", false},
		// Only the first field counts, as with Peek; the rest stay.
		{"POST /a HTTP/1.1\r\nHost: gw\r\nExpect: 100-Continue\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n", "100-continue,something-else", true},
		{"POST /a HTTP/1.1\r\nHost: gw\r\nExpect: something-else\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "something-else,100-continue", false},
		// HTTP/1.0: no 100, and the other expectation is not lost with it.
		{"POST /a HTTP/1.0\r\nExpect: 100-continue\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n", "100-Continue,something-else", false},
	} {
		var req fasthttp.Request
		if err := req.Header.Read(bufioReader(tc.head)); err != nil {
			t.Fatal(err)
		}
		if got := ExpectsContinue(&req.Header); got != tc.continues {
			t.Fatalf("%q: ExpectsContinue = %v", tc.head, got)
		}
		HeaderReceived(&req.Header, 1<<20)
		if got := string(bytes.Join(req.Header.PeekAll("Expect"), []byte(","))); got != tc.want || req.MayContinue() != tc.continues {
			t.Fatalf("%q: Expect %q after HeaderReceived (MayContinue %v), want %q", tc.head, got, req.MayContinue(), tc.want)
		}
	}
}

// A lone 100-continue expectation stops at the gateway: the transport
// answered it (or owed no 100) and the upstream gets the whole body at once
// (RFC 9110 §10.1.1), so it must not answer a 100 first. Another expectation
// is the upstream's to meet or refuse, and beside one a 100-continue goes on
// too: deleting it by name dropped every Expect field, and the upstream
// proxied a 200 where it would have answered 417.
func TestExpectContinueIsNotForwarded(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{}, up)
	for _, tc := range []struct{ head, want string }{
		{"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", ""},
		{"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nexpect: 100-CONTINUE\r\nContent-Length: 5\r\n\r\n", ""},
		{"POST /api/v1/orders HTTP/1.0\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", ""},
		{"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n", "something-else"},
		{"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n", "100-continue,something-else"},
		{"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nExpect: something-else\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "something-else,100-continue"},
		{"POST /api/v1/orders HTTP/1.0\r\nExpect: 100-continue\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n", "100-continue,something-else"},
		{"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "100-continue,100-continue"},
	} {
		var req fasthttp.Request
		if err := req.Header.Read(bufioReader(tc.head)); err != nil {
			t.Fatal(err)
		}
		req.SetBodyString("hello")
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 4000}, nil)
		p.Handle(&ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%q: %d %s", tc.head, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if got := string(bytes.Join(up.last.Load().PeekAll("Expect"), []byte(","))); got != tc.want {
			t.Fatalf("%q: the upstream got Expect %q, want %q", tc.head, got, tc.want)
		}
	}
}

// An upstream 204 or 304 goes out without a body, and a 204 without
// Content-Length (RFC 9110 §8.6), whatever the upstream sent.
func TestNoContent(t *testing.T) {
	for _, tc := range []struct {
		status int
		length string
	}{{204, ""}, {304, "5"}} {
		var resp fasthttp.Response
		if err := resp.Header.Read(bufioReader(fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n", tc.status))); err != nil {
			t.Fatal(err)
		}
		resp.SetBodyString("hello") // as if the transport had read one
		noContent(&resp)
		if len(resp.Body()) != 0 || string(resp.Header.Peek("Content-Length")) != tc.length {
			t.Fatalf("%d: body %q, Content-Length %q; want %q", tc.status, resp.Body(), resp.Header.Peek("Content-Length"), tc.length)
		}
		if out := resp.String(); strings.Contains(out, "hello") || (tc.length == "") == strings.Contains(out, "Content-Length") {
			t.Fatalf("%d: written as %q", tc.status, out)
		}
	}
}

// X-Request-Timeout-Ms is read as the services read it (pkg/deadline): 0 or
// less has expired and is answered 504 before any attempt, a malformed value
// 400, and one past 2^32-1 or int64 is a long time, capped as 2^32-1 is
// (MaxTimeout, here below the route's 1 s). The gateway's own parse (32-bit,
// unsigned) took all of those for no header and sent an expired request
// upstream with the whole route timeout.
func TestClientTimeoutIsReadAsTheServicesReadIt(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}, MaxTimeout: 500 * time.Millisecond}, up)
	const maxMs = 500
	for _, c := range []struct {
		value  string
		status int // 200: sent upstream
	}{
		{"0", 504}, {"-1", 504}, {"-99999999999999999999", 504},
		{"abc", 400}, {"1.5", 400}, {"+", 400}, {"99999999999999999999x", 400},
		{"4294967295", 200}, {"4294967296", 200}, {"99999999999999999999", 200}, {"250", 200},
	} {
		raw := "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\nX-Request-Timeout-Ms: " + c.value + "\r\n\r\n"
		check := func(transport string, status int, ctype, sent []byte, hit bool) {
			t.Helper()
			if status != c.status {
				t.Errorf("%s: X-Request-Timeout-Ms: %s answered %d, want %d", transport, c.value, status, c.status)
			}
			if c.status != 200 {
				if hit || string(ctype) != "application/problem+json" {
					t.Errorf("%s: X-Request-Timeout-Ms: %s: sent upstream %v, answer %s; want a problem, not sent", transport, c.value, hit, ctype)
				}
				return
			}
			want := int64(maxMs)
			if c.value == "250" {
				want = 250
			}
			if ms, err := strconv.ParseInt(string(sent), 10, 64); err != nil || ms > want || ms < want-100 {
				t.Errorf("%s: X-Request-Timeout-Ms: %s went upstream as %q, want about %d", transport, c.value, sent, want)
			}
		}
		hits := up.hits.Load()
		ctx := serve(p, raw)
		hit := up.hits.Load() != hits
		var sent []byte
		if hit {
			sent = up.last.Load().Peek(TimeoutHeader)
		}
		check("fasthttp", ctx.Response.StatusCode(), ctx.Response.Header.ContentType(), sent, hit)

		x, s := beginOnLoop(t, p, raw)
		status := x.Resp.StatusCode()
		if s == Send {
			status = 200
		}
		check("event loop", status, x.Resp.Header.ContentType(), x.Req.Header.Peek(TimeoutHeader), s == Send)
	}
}

// A body announced over the limit is owed no 100: the server answers 413
// without it, as the event loop does.
func TestHeaderReceivedNoContinueOverTheLimit(t *testing.T) {
	for _, tc := range []struct {
		length    int
		continues bool
	}{{1000, true}, {1001, false}} {
		var req fasthttp.Request
		head := fmt.Sprintf("POST /a HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", tc.length)
		if err := req.Header.Read(bufioReader(head)); err != nil {
			t.Fatal(err)
		}
		if HeaderReceived(&req.Header, 1000); req.MayContinue() != tc.continues {
			t.Fatalf("Content-Length %d, limit 1000: MayContinue %v, want %v", tc.length, req.MayContinue(), tc.continues)
		}
	}
}

// A chunked request's trailer fields are no header fields (RFC 9110
// §6.5.2): read as the fasthttp server reads it (head, HeaderReceived,
// body and trailer), one with any is 400, and one without goes upstream
// without the transports' mark (MarkTrailer).
func TestChunkedTrailerFields(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}}, up)
	read := func(raw string) *fasthttp.RequestCtx {
		var req fasthttp.Request
		br := bufioReader(raw)
		if err := req.Header.Read(br); err != nil {
			t.Fatal(err)
		}
		HeaderReceived(&req.Header, 1<<20)
		if err := req.ContinueReadBody(br, 0); err != nil {
			t.Fatal(err)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 4000}, nil)
		p.Handle(&ctx)
		return &ctx
	}
	head := "POST /api/v1/products HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n2\r\n{}\r\n0\r\n"
	ctx := read(head + "X-Release-Tag: canary\r\nIdempotency-Key: k1\r\nX-Request-ID: from-the-trailer\r\n\r\n")
	if ctx.Response.StatusCode() != 400 || !strings.Contains(string(ctx.Response.Body()), "/malformed-request") || up.hits.Load() != 0 {
		t.Fatalf("trailer fields: got %d %s, upstream hits %d; want 400 malformed-request, none", ctx.Response.StatusCode(), ctx.Response.Body(), up.hits.Load())
	}
	if id := string(ctx.Response.Header.Peek(RequestIDHeader)); id == "" || id == "from-the-trailer" {
		t.Fatalf("the 400's request id is %q, want one of the gateway's", id)
	}
	ctx = read(head + "\r\n")
	if ctx.Response.StatusCode() != 200 || up.hits.Load() != 1 {
		t.Fatalf("no trailer: got %d %s, upstream hits %d; want 200, 1", ctx.Response.StatusCode(), ctx.Response.Body(), up.hits.Load())
	}
	h := up.last.Load()
	for k := range h.All() {
		if string(k) == trailerMark {
			t.Fatalf("the upstream got the mark:\n%s", h.Header())
		}
	}
	if string(h.Peek("X-A")) != "1" {
		t.Fatalf("the upstream lost X-A:\n%s", h.Header())
	}
}

// A dynamic route timeout is capped by MaxTimeout (GATEWAY_MAX_TIMEOUT) as
// start-up caps the table's: a run-time document set 10 s against a 500 ms
// cap and the upstream was given, and held, the whole 10 s.
func TestDynamicRouteTimeoutCappedByMaxTimeout(t *testing.T) {
	up := startUpstream(t)
	dyn := Dynamic{Timeouts: map[string]time.Duration{"products": 10 * time.Second}}
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}, MaxTimeout: 500 * time.Millisecond, Dynamic: func() Dynamic { return dyn }}, up)
	const raw = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n"
	if ctx := serve(p, raw); ctx.Response.StatusCode() != 200 {
		t.Fatalf("fasthttp: status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	sent := up.last.Load().Peek(TimeoutHeader)
	// Only the upper bound: the value is what is left when it is sent, and
	// how long that took is the machine's load, not the cap.
	if ms, err := strconv.ParseInt(string(sent), 10, 64); err != nil || ms > 500 || ms <= 0 {
		t.Errorf("fasthttp: %s went upstream as %q, want about 500 (GATEWAY_MAX_TIMEOUT), not the document's 10000", TimeoutHeader, sent)
	}
	x, s := beginOnLoop(t, p, raw)
	if s != Send {
		t.Fatalf("loop: Begin gave %v, want Send", s)
	}
	if d := x.Deadline.Sub(x.start); d != 500*time.Millisecond {
		t.Errorf("loop: deadline %v after the start, want 500ms (GATEWAY_MAX_TIMEOUT), not the document's 10s", d)
	}
	// A client's shorter X-Request-Timeout-Ms still sets the deadline
	// under the cut one.
	x, s = beginOnLoop(t, p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\nX-Request-Timeout-Ms: 200\r\n\r\n")
	if s != Send {
		t.Fatalf("loop, a client's 200 ms: Begin gave %v, want Send", s)
	}
	if d := x.Deadline.Sub(x.start); d != 200*time.Millisecond {
		t.Errorf("loop: deadline %v after the start with X-Request-Timeout-Ms: 200, want 200ms", d)
	}
}
