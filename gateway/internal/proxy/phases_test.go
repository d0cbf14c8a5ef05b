package proxy

import (
	"context"
	"net/netip"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
)

// With mayBlock false the chain stops before a limiter that cannot decide
// locally, and resumes there: the request is limited once, not twice.
func TestBeginBlocksAndResumes(t *testing.T) {
	up := startUpstream(t)
	lim := &countingDeny{}
	p, _ := newTestProxy(t, Options{IPLimit: lim}, up)
	var req fasthttp.Request
	var resp fasthttp.Response
	_ = req.Read(bufioReader("GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n"))
	x := NewExchange(&req, &resp, netip.MustParseAddr("203.0.113.5"), nil)
	defer x.Release()
	if s := p.Begin(x, false); s != Blocked {
		t.Fatalf("Begin(no block) = %v, want Blocked", s)
	}
	if lim.calls != 0 {
		t.Fatalf("limiter called %d times before blocking", lim.calls)
	}
	if s := p.Begin(x, true); s != Done || resp.StatusCode() != 429 {
		t.Fatalf("resumed: step %v status %d, want Done 429", s, resp.StatusCode())
	}
	p.Finish(x)
	if lim.calls != 1 || up.hits.Load() != 0 {
		t.Fatalf("limiter calls %d, upstream hits %d; want 1 and 0", lim.calls, up.hits.Load())
	}
}

type countingDeny struct {
	denyAll
	calls int
}

func (c *countingDeny) Allow(ctx context.Context, key []byte) (quota.Decision, error) {
	c.calls++
	return c.denyAll.Allow(ctx, key)
}
