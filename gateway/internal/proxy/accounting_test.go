package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel"

	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/pkg/retry"
)

// attemptOnLoop runs raw through the phases as the event loop drives them
// (a Blocked request resumed off the loop), the one attempt, if any, ending
// as the loop would report it: with err (fasthttp.ErrTimeout when the
// deadline passed first), or with an answer of the given status from the
// upstream. The upstream is never called.
func attemptOnLoop(t *testing.T, p *Proxy, raw string, err error, status int) int {
	t.Helper()
	x, s := beginOnLoop(t, p, raw)
	if s == Send {
		if err == nil {
			x.Resp.SetStatusCode(status)
		}
		s = p.Received(x, err)
	}
	if s != Done {
		t.Fatalf("%q: step %v after one attempt, want Done", raw, s)
	}
	p.Finish(x)
	return x.Resp.StatusCode()
}

// beginOnLoop starts raw, from peer 203.0.113.5, through the phases as the
// event loop does: Begin on the loop, and again off it, allowed to wait, if
// that stopped with Blocked. The exchange is released when the test ends.
func beginOnLoop(t *testing.T, p *Proxy, raw string) (*Exchange, Step) {
	t.Helper()
	req, resp := new(fasthttp.Request), new(fasthttp.Response)
	if err := req.Read(bufioReader(raw)); err != nil {
		t.Fatal(err)
	}
	x := NewExchange(req, resp, netip.MustParseAddr("203.0.113.5"), nil)
	t.Cleanup(x.Release)
	s := p.Begin(x, false)
	if s == Blocked {
		s = p.Begin(x, true)
	}
	return x, s
}

// guarded puts a fresh breaker and concurrency limit on the test proxy's
// service. The limit starts at 2 of at most 10, so that growth shows.
func guarded(t *testing.T, pool *upstream.Pool) (*breaker.Breaker, *limit.Adaptive) {
	br := breaker.New(t.Name(), breaker.Settings{MinRequests: 5, FailureRatio: 0.5})
	lim := limit.NewAdaptive(limit.AdaptiveOptions{Initial: 2, Max: 10})
	t.Cleanup(func() { br.Close(); lim.Close() })
	svc := pool.Service("order")
	svc.Breaker, svc.Limit = br, lim
	return br, lim
}

// An attempt ended by the client's own deadline (X-Request-Timeout-Ms below
// the route's timeout), at the gateway or as the upstream's 504, says
// nothing about the upstream: it counted as a failure, so any client could
// open the breaker and shrink the concurrency limit for everyone; then as a
// healthy completion, which grew the limit (2 to 4 here on the event loop).
// It now only frees its slot. A route timeout still counts.
func TestClientDeadlineIsNoUpstreamFailure(t *testing.T) {
	const (
		shortened = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\nX-Request-Timeout-Ms: 5\r\n\r\n"
		plain     = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n"
		// The event loop's attempts must still be sent (Send) with the
		// client's time: 5 ms ran out before the pick on a loaded machine
		// (load 18-21, -race), a 504 before any attempt.
		loopShortened = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\nX-Request-Timeout-Ms: 200\r\n\r\n"
	)
	t.Run("fasthttp", func(t *testing.T) {
		// An upstream that answers only when the test ends: the client's
		// 5 ms run out first, whatever the machine's speed.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { <-release }}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { close(release); _ = srv.Shutdown() })
		p, pool := newTestProxy(t, Options{MaxAttempts: 1}, &fakeUpstream{addr: ln.Addr().String()})
		br, lim := guarded(t, pool)
		for range 20 {
			if ctx := serve(p, shortened); ctx.Response.StatusCode() != 504 {
				t.Fatalf("status %d, want 504", ctx.Response.StatusCode())
			}
		}
		if br.State() != breaker.Closed || lim.Limit() != 2 || lim.InFlight() != 0 {
			t.Fatalf("after 20 client deadlines: breaker %v, limit %d, in flight %d; want closed, 2, 0", br.State(), lim.Limit(), lim.InFlight())
		}
	})
	t.Run("event loop", func(t *testing.T) {
		p, pool := newTestProxy(t, Options{MaxAttempts: 1}, startUpstream(t))
		br, lim := guarded(t, pool)
		for range 10 {
			// Both attempts in flight at once, the limit in full use: as
			// healthy completions they would grow it.
			var xs []*Exchange
			for range 2 {
				x, s := beginOnLoop(t, p, loopShortened)
				if s != Send {
					t.Fatalf("step %v, want Send", s)
				}
				xs = append(xs, x)
			}
			p.Received(xs[0], fasthttp.ErrTimeout)
			// The upstream's 504 when the deadline it was sent ran out.
			time.Sleep(time.Until(xs[1].Deadline))
			xs[1].Resp.SetStatusCode(504)
			p.Received(xs[1], nil)
			for _, x := range xs {
				p.Finish(x)
			}
		}
		if br.State() != breaker.Closed || lim.Limit() != 2 || lim.InFlight() != 0 {
			t.Fatalf("after 20 client deadlines: breaker %v, limit %d, in flight %d; want closed, 2, 0", br.State(), lim.Limit(), lim.InFlight())
		}
		for range 5 {
			if s := attemptOnLoop(t, p, plain, fasthttp.ErrTimeout, 0); s != 504 {
				t.Fatalf("route timeout: %d, want 504", s)
			}
		}
		if br.State() != breaker.Open || lim.Limit() >= 2 {
			t.Fatalf("after 5 route timeouts: breaker %v, limit %d; want open, below 2", br.State(), lim.Limit())
		}
	})
}

// An upstream's 504 that comes long before the client's deadline is the
// upstream failing (a dependency of its own down), not that deadline: it
// was ignored whenever the client sent any X-Request-Timeout-Ms shorter than
// the route's (as every service-to-service call does), so the breaker never
// opened for those clients.
func TestEarlyUpstream504UnderClientDeadlineCounts(t *testing.T) {
	for _, hdr := range []string{"", "X-Request-Timeout-Ms: 900\r\n"} {
		p, pool := newTestProxy(t, Options{MaxAttempts: 1}, startUpstream(t))
		br, _ := guarded(t, pool)
		raw := "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n" + hdr + "\r\n"
		for range 5 {
			attemptOnLoop(t, p, raw, nil, 504) // at once, 900 ms before the deadline
		}
		if br.State() != breaker.Open {
			t.Errorf("%q: breaker %v after 5 immediate upstream 504s, want open", hdr, br.State())
		}
	}
}

// An attempt the transport ended because the client went away (the event
// loop closes that upstream connection) is no evidence about the upstream
// and is not retried, idempotent or not: nobody would read the answer. It
// answers 499, for the metrics and the span.
func TestClientGoneIsNoUpstreamFailure(t *testing.T) {
	p, pool := newTestProxy(t, Options{MaxAttempts: 2}, startUpstream(t))
	br, lim := guarded(t, pool)
	for range 10 {
		// attemptOnLoop fails the test on a retry (Send after the attempt).
		if s := attemptOnLoop(t, p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n", ErrClientGone, 0); s != 499 {
			t.Fatalf("status %d, want 499", s)
		}
	}
	if br.State() != breaker.Closed || lim.Limit() != 2 || lim.InFlight() != 0 {
		t.Fatalf("after 10 clients gone: breaker %v, limit %d, in flight %d; want closed, 2, 0", br.State(), lim.Limit(), lim.InFlight())
	}
}

// slowAllow is a limiter that takes longer than the client's deadline, as
// a Redis lease refill or a JWKS fetch may.
type slowAllow struct{}

func (slowAllow) Allow(context.Context, []byte) (quota.Decision, error) {
	time.Sleep(3 * time.Millisecond) // past the requests' 1 ms deadline
	return quota.Decision{Allowed: true}, nil
}

// A request whose deadline is gone before its attempt is never sent, and
// tells the breaker nothing: it was reported as a success, and three such
// requests closed a half-open breaker while the upstream still failed.
func TestUnsentRequestsLeaveHalfOpenBreaker(t *testing.T) {
	const expired = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\nX-Request-Timeout-Ms: 1\r\n\r\n"
	for _, transport := range []string{"fasthttp", "event loop"} {
		t.Run(transport, func(t *testing.T) {
			up := startUpstream(t)
			up.status.Store(503)
			p, pool := newTestProxy(t, Options{IPLimit: slowAllow{}, MaxAttempts: 1}, up)
			br := breaker.New(t.Name(), breaker.Settings{MinRequests: 1, OpenBase: time.Millisecond, Jitter: 0.01})
			t.Cleanup(br.Close)
			pool.Service("order").Breaker = br
			if ctx := serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n"); ctx.Response.StatusCode() != 503 || br.State() == breaker.Closed {
				t.Fatalf("a 503 left the breaker %v", br.State())
			}
			for br.State() != breaker.HalfOpen {
				time.Sleep(time.Millisecond)
			}
			hits := up.hits.Load()
			for range 5 {
				status := 0
				if transport == "fasthttp" {
					status = serve(p, expired).Response.StatusCode()
				} else {
					status = attemptOnLoop(t, p, expired, nil, 200)
				}
				if status != 504 {
					t.Fatalf("expired request: %d, want 504", status)
				}
			}
			if br.State() != breaker.HalfOpen || up.hits.Load() != hits {
				t.Fatalf("after 5 unsent requests: breaker %v, upstream hits %d more; want half-open, none", br.State(), up.hits.Load()-hits)
			}
		})
	}
}

// firstOnly is a breaker that admits its first call and refuses the rest.
type firstOnly struct{ calls atomic.Int64 }

func (b *firstOnly) Admit() (func(breaker.Outcome), error) {
	if b.calls.Add(1) == 1 {
		return func(breaker.Outcome) {}, nil
	}
	return nil, errors.New("open")
}

// A request the breaker refuses was never sent: it says nothing about the
// upstream's concurrency either. Its slot was handed back as a healthy
// completion with no latency, which grew the adaptive limit (2 to 4 here,
// beside one request in flight) while the breaker was open, so the
// upstream met a higher limit than it had earned.
func TestBreakerRefusalLeavesTheConcurrencyLimit(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	addr := upstreamtest.Raw(t, func(w io.Writer, req *http.Request) {
		arrived <- struct{}{}
		<-release
		upstreamtest.OK(w, "held")
	})
	t.Cleanup(free) // after Raw's, so it runs first: Raw's waits for the held handler
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: addr, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
	tb, err := route.Parse("/api/v1/products=order", 5*time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Table: tb, Upstreams: pool, MaxAttempts: 1})
	_, lim := guarded(t, pool)
	pool.Service("order").Breaker = &firstOnly{}
	held := make(chan int, 1)
	go func() {
		held <- serve(p, "GET /api/v1/products/held HTTP/1.1\r\nHost: gw\r\n\r\n").Response.StatusCode()
	}()
	<-arrived // one attempt in flight from here until release
	for range 20 {
		if ctx := serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n"); ctx.Response.StatusCode() != 503 {
			t.Fatalf("breaker open: %d, want 503", ctx.Response.StatusCode())
		}
	}
	if lim.Limit() != 2 || lim.InFlight() != 1 {
		t.Fatalf("after 20 refusals: limit %d, in flight %d; want 2, 1 (the held request)", lim.Limit(), lim.InFlight())
	}
	free()
	if status := <-held; status != 200 {
		t.Fatalf("held request: %d", status)
	}
}

// outcomeBreaker admits every call and counts the failures reported.
type outcomeBreaker struct{ failures atomic.Int64 }

func (b *outcomeBreaker) Admit() (func(breaker.Outcome), error) {
	return func(o breaker.Outcome) {
		if o == breaker.Failure {
			b.failures.Add(1)
		}
	}, nil
}

// takeCounter is a retry budget that allows every retry and counts them.
type takeCounter struct{ takes atomic.Int64 }

func (b *takeCounter) RequestAt(time.Time) {}
func (b *takeCounter) Take() (retry.Withdrawal, bool) {
	b.takes.Add(1)
	return retry.Withdrawal{}, true
}

// An attempt the transport could not make because the gateway is stopping
// (the event loop refuses a dial then, and ends those in flight) is no
// evidence about the upstream and is not retried: it went through as an
// upstream failure, a 502 counted against the breaker, and an idempotent
// request was retried (refused again) up to MaxAttempts, each retry charged
// to the budget. It answers 503 gateway-stopping, problem+json, counted
// in the server's RED metrics as the 503 the client got, and in no
// upstream series (the upstream was not asked).
func TestStoppingIsNoUpstreamFailure(t *testing.T) {
	p, pool := newTestProxy(t, Options{MaxAttempts: 3, Metrics: true}, startUpstream(t))
	reg := prometheus.NewRegistry() // this test's series alone
	p.metrics = newMetricsIn(reg, otel.GetMeterProvider())
	br, budget := &outcomeBreaker{}, &takeCounter{}
	svc := pool.Service("order")
	svc.Breaker, svc.Budget = br, budget
	for _, refusal := range []error{
		fmt.Errorf("dial 127.0.0.1:1: %w", ErrStopping),                       // refused before the dial
		fmt.Errorf("dial 127.0.0.1:1: %w: %w", ErrStopping, context.Canceled), // ended in flight
	} {
		x, s := beginOnLoop(t, p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
		if s != Send {
			t.Fatalf("step %v, want Send", s)
		}
		if s = p.Received(x, refusal); s != Done {
			t.Fatalf("%v: step %v after the refused attempt, want Done (no retry)", refusal, s)
		}
		p.Finish(x)
		if x.Resp.StatusCode() != 503 || string(x.Resp.Header.ContentType()) != "application/problem+json" ||
			!strings.Contains(string(x.Resp.Body()), "gateway-stopping") {
			t.Fatalf("%v: %d %q %s, want 503 problem+json gateway-stopping", refusal, x.Resp.StatusCode(), x.Resp.Header.ContentType(), x.Resp.Body())
		}
	}
	if n := br.failures.Load(); n != 0 {
		t.Fatalf("%d breaker failures from attempts refused at stop, want 0", n)
	}
	if n, sent := budget.takes.Load(), counted(p, "sent"); n != 0 || sent != 0 {
		t.Fatalf("attempts refused at stop took %d retries from the budget and sent %d, want 0 and 0", n, sent)
	}
	var served uint64
	for k, h := range histograms(t, reg) {
		switch {
		case strings.HasPrefix(k, "http_client_"):
			t.Fatalf("an upstream series for attempts refused at stop: %s", k)
		case strings.HasPrefix(k, "http_server_") && strings.Contains(k, "status_code=503"):
			served += h.GetSampleCount()
		}
	}
	if served != 2 {
		t.Fatalf("%d requests counted 503 in the server's metrics, want 2", served)
	}
}
