package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/pkg/retry"
)

// trippingBreaker admits calls until one fails, then refuses them until the
// test closes it again: a breaker that a failure trips, as pkg/breaker's
// does in its half-open state (one trial, and open again when it fails).
type trippingBreaker struct{ open, keepClosed atomic.Bool }

func (b *trippingBreaker) Admit() (func(breaker.Outcome), error) {
	if b.open.Load() {
		return nil, errors.New("open")
	}
	return func(o breaker.Outcome) {
		if o == breaker.Failure && !b.keepClosed.Load() {
			b.open.Store(true)
		}
	}, nil
}

// A retry the breaker (or the concurrency limit, or the deadline) refuses
// after the budget allowed it is never sent, and must not be charged to
// the budget: in an outage every half-open trial that failed spent a retry
// nobody sent, the window's retries ran out, and once the upstream was
// answering again a real retry was refused.
func TestRetryRefusedAtPickIsNotCharged(t *testing.T) {
	const get = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n"
	up := startUpstream(t)
	up.status.Store(503)
	p, pool := newTestProxy(t, Options{MaxAttempts: 2, Metrics: true}, up)
	br := &trippingBreaker{}
	svc := pool.Service("order")
	svc.Breaker = br
	// Ratio 0, floor 1/s over 10 s: ten retries in the window, and the
	// test's requests add none.
	svc.Budget = retry.NewBudget(0, 1, 10*time.Second)

	// The outage: each request's attempt is a half-open trial that fails,
	// and its retry finds the breaker open again.
	for i := range 12 {
		br.open.Store(false)
		if ctx := serve(p, get); ctx.Response.StatusCode() != 503 {
			t.Fatalf("request %d during the outage: %d, want 503", i, ctx.Response.StatusCode())
		}
	}
	if n := up.hits.Load(); n != 12 {
		t.Fatalf("upstream hits %d during the outage, want 12 (one per request, no retry got past the breaker)", n)
	}
	if n := counted(p, "sent"); n != 0 {
		t.Fatalf("retries counted as sent: %d, but none reached the upstream", n)
	}

	// The breaker stays closed now: a failing GET is retried, as the
	// budget has spent nothing.
	br.open.Store(false)
	br.keepClosed.Store(true)
	hits := up.hits.Load()
	serve(p, get)
	if n := up.hits.Load() - hits; n != 2 {
		t.Fatalf("a failing GET reached the upstream %d times, want 2: its retry was refused by a budget spent on retries never sent", n)
	}
	if n := counted(p, "sent"); n != 1 {
		t.Fatalf("retries counted as sent: %d, want 1", n)
	}
}

// counted is the gateway's retries counter for the order service and outcome.
func counted(p *Proxy, outcome string) int64 {
	return p.metrics.counter(countKey{retries: true, a: "order", b: outcome}).n.Load()
}

// A retry that is not sent leaves the client the upstream's answer to the
// attempt that was: the gateway's refusal was written over it but kept its
// fields, so a 503 the upstream had compressed went out as a plain problem
// document still marked Content-Encoding: gzip (and with the upstream's
// cookies and validators), which the client could not decode.
func TestRefusedRetryLeavesTheUpstreamsAnswer(t *testing.T) {
	const body = `{"detail":"overloaded"}`
	addr := upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Language: de\r\n"+
			"Retry-After: 30\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	p, pool := newTestProxy(t, Options{MaxAttempts: 2}, &fakeUpstream{addr: addr})
	pool.Service("order").Breaker = &trippingBreaker{}
	ctx := serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
	h := &ctx.Response.Header
	if ctx.Response.StatusCode() != 503 || string(ctx.Response.Body()) != body || string(h.Peek("Content-Language")) != "de" ||
		string(h.Peek("Retry-After")) != "30" || !strings.HasPrefix(string(h.ContentType()), "application/json") {
		t.Fatalf("answer after a refused retry: %d %q\n%s", ctx.Response.StatusCode(), ctx.Response.Body(), h.String())
	}
}

// An instance that answers 503 with Retry-After has asked not to be asked
// again before then (RFC 9110 §10.2.3): the retry goes to another instance,
// and with none it is not sent. It went straight back to the same
// instance, the only one, within the same millisecond.
func TestRetryAfter503GoesElsewhereOrNowhere(t *testing.T) {
	const body = `{"detail":"database unavailable"}`
	busy := func(field string, hits *atomic.Int64) string {
		return upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) {
			hits.Add(1)
			_, _ = fmt.Fprintf(w, "HTTP/1.1 503 Service Unavailable\r\n%s: 30\r\nContent-Length: %d\r\n\r\n%s", field, len(body), body)
		})
	}
	// The fasthttp transport keeps the answer's field names as sent.
	for _, field := range []string{"Retry-After", "retry-after"} {
		t.Run("one instance, "+field, func(t *testing.T) {
			var hits atomic.Int64
			p, _ := newTestProxy(t, Options{MaxAttempts: 2, Metrics: true}, &fakeUpstream{addr: busy(field, &hits)})
			ctx := serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
			if n := hits.Load(); n != 1 || ctx.Response.StatusCode() != 503 || string(ctx.Response.Body()) != body {
				t.Fatalf("instance asked %d times, answer %d %q; want once, its own 503", n, ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if n := counted(p, "sent"); n != 0 {
				t.Fatalf("retries counted as sent: %d, want 0", n)
			}
		})
	}
	t.Run("another instance", func(t *testing.T) {
		var hits atomic.Int64
		good := startUpstream(t)
		p, _ := newTestProxy(t, Options{MaxAttempts: 2}, &fakeUpstream{addr: busy("Retry-After", &hits)}, good)
		for range 10 {
			if ctx := serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n"); ctx.Response.StatusCode() != 200 {
				t.Fatalf("%d: not retried on the other instance", ctx.Response.StatusCode())
			}
		}
	})
	t.Run("503 without Retry-After", func(t *testing.T) {
		up := startUpstream(t)
		up.status.Store(503)
		p, _ := newTestProxy(t, Options{MaxAttempts: 2}, up)
		serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
		if n := up.hits.Load(); n != 2 {
			t.Fatalf("one instance asked %d times, want 2: a plain 503 is still retried", n)
		}
	})
}

// gate is a concurrency limit the test opens and shuts.
type gate struct{ shut atomic.Bool }

func (g *gate) Admit() (limit.Ticket, bool)            { return limit.Ticket{}, !g.shut.Load() }
func (g *gate) Done(limit.Ticket, time.Duration, bool) {}
func (g *gate) Forget(limit.Ticket)                    {}

// The budget allows retries as a share of the requests an upstream gets.
// Requests the gateway refused before sending (breaker open, concurrency
// limit full, no instance, no time left) were counted too, so in an
// overload, where most are refused, the budget grew with the refusals and
// let through retries that doubled what the upstream got.
func TestBudgetCountsOnlyRequestsSent(t *testing.T) {
	const get = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n"
	up := startUpstream(t)
	up.status.Store(503)
	p, pool := newTestProxy(t, Options{MaxAttempts: 2}, up)
	g := &gate{}
	svc := pool.Service("order")
	svc.Limit = g
	svc.Budget = retry.NewBudget(0.2, 0, 10*time.Second) // no floor: a fifth of the requests

	g.shut.Store(true)
	for range 100 {
		if ctx := serve(p, get); ctx.Response.StatusCode() != 503 {
			t.Fatalf("refused request: %d", ctx.Response.StatusCode())
		}
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the upstream through a shut limit", n)
	}
	g.shut.Store(false)
	for range 10 {
		serve(p, get)
	}
	// Ten requests sent: two retries at a fifth.
	if n := up.hits.Load(); n != 12 {
		t.Fatalf("10 failing requests reached the upstream %d times, want 12 (2 retries): the 100 refused requests were counted", n)
	}
}

// An upstream 504 at the client's own deadline (X-Request-Timeout-Ms, within
// deadlineSlack of it) is that deadline running out, as Received already
// tells the breaker: a retry then has the few milliseconds left at most,
// and was sent all the same, charged to the budget, to an upstream told it
// had 1 or 2 ms.
func TestNoRetryAtTheClientsDeadline(t *testing.T) {
	a, b := startUpstream(t), startUpstream(t)
	p, pool := newTestProxy(t, Options{MaxAttempts: 2}, a, b)
	budget := &countingBudget{}
	pool.Service("order").Budget = budget
	x, s := beginOnLoop(t, p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\nX-Request-Timeout-Ms: 100\r\n\r\n")
	if s != Send || !x.clientDeadline {
		t.Fatalf("step %v, client deadline %v: want Send under the client's deadline", s, x.clientDeadline)
	}
	// The upstream's 504 comes with 4 ms left of the client's 100.
	x.Deadline = time.Now().Add(deadlineSlack - time.Millisecond)
	x.Resp.SetStatusCode(504)
	if s := p.Received(x, nil); s != Done || budget.withdrawn.Load() != 0 {
		t.Fatalf("step %v after a 504 at the client's deadline, %d retries withdrawn; want Done, none", s, budget.withdrawn.Load())
	}
}
