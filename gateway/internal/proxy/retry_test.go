package proxy

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/breaker"
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
