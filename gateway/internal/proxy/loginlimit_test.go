package proxy

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
)

// countingLimiter allows or refuses every key, counting the calls.
type countingLimiter struct {
	allow bool
	limit int
	calls int
}

func (l *countingLimiter) Allow(context.Context, []byte) (quota.Decision, error) {
	l.calls++
	return l.decision(), nil
}

func (l *countingLimiter) decision() quota.Decision {
	d := quota.Decision{Allowed: l.allow, Limit: l.limit, RetryAfter: time.Second, ResetAfter: time.Second, Window: time.Minute}
	if l.allow {
		d.Remaining = l.limit - 1
	}
	return d
}

// TestLoginMeetsThePerIPLimitToo: the login limit is a stricter class on
// top of the per-IP limit, not in its place. In its place, a client the
// per-IP limit refused still logged in as often as the login limit allowed,
// and with the login limit off (GATEWAY_LOGIN_LIMIT=0, or "login": "0" in
// dynamic config) it logged in without any limit at all.
func TestLoginMeetsThePerIPLimitToo(t *testing.T) {
	up := startUpstream(t)
	ip, login := &countingLimiter{allow: false, limit: 1000}, &countingLimiter{allow: true, limit: 10}
	p, pool := newTestProxy(t, Options{IPLimit: ip, LoginLimit: login}, up)
	tb, err := route.Parse("/api/v1/sessions=order", time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	p.o.Table, p.o.Upstreams = tb, pool

	ctx := serve(p, "POST /api/v1/sessions HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
	if got := ctx.Response.StatusCode(); got != 429 || up.hits.Load() != 0 {
		t.Fatalf("log in past the per-IP limit: status %d, upstream hits %d; want 429 and none", got, up.hits.Load())
	}
	if ip.calls != 1 {
		t.Fatalf("per-IP limit asked %d times, want 1", ip.calls)
	}

	// Both allow: the log in goes through, having met both, and the
	// answer's RateLimit fields are the login limit's, the stricter.
	ip.allow, ip.calls, login.calls = true, 0, 0
	ctx = serve(p, "POST /api/v1/sessions HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
	if got := ctx.Response.StatusCode(); got != 200 || ip.calls != 1 || login.calls != 1 {
		t.Fatalf("log in within both limits: status %d, per-IP asked %d, login asked %d; want 200, 1, 1", got, ip.calls, login.calls)
	}
	if got := string(ctx.Response.Header.Peek("Ratelimit")); got != "limit=10, remaining=9, reset=1" {
		t.Fatalf("RateLimit %q, want the login limit's", got)
	}

	// The login limit refuses: 429 although the per-IP limit allows.
	login.allow = false
	if got := serve(p, "POST /api/v1/sessions HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}").Response.StatusCode(); got != 429 {
		t.Fatalf("log in past the login limit: status %d, want 429", got)
	}
	// Any other call meets the per-IP limit alone.
	login.calls = 0
	if got := serve(p, "GET /api/v1/sessions HTTP/1.1\r\nHost: gw\r\n\r\n").Response.StatusCode(); got == 429 || login.calls != 0 {
		t.Fatalf("GET on the sessions route: status %d, login limit asked %d times; want no 429 and none", got, login.calls)
	}
}

// localCounting is a countingLimiter that also decides locally, as a
// quota.Lease does on a lease hit, counting those decisions apart.
type localCounting struct {
	countingLimiter
	local int
}

func (l *localCounting) AllowLocal([]byte, time.Time) (quota.Decision, bool) {
	l.local++
	return l.decision(), true
}

// TestLoginResumesAfterThePerIPLimit: on the event loop the per-IP limit
// decides from its lease and the login limit must ask Redis; the chain
// blocks there and resumes at the login limit, so the per-IP token is
// charged once, and the 429 the login limit gives carries its own fields.
// When the per-IP limit is the one that refuses, the fields are the per-IP
// limit's, not the login limit's.
func TestLoginResumesAfterThePerIPLimit(t *testing.T) {
	up := startUpstream(t)
	ip := &localCounting{countingLimiter: countingLimiter{allow: true, limit: 100}}
	login := &countingLimiter{allow: false, limit: 10}
	p, pool := newTestProxy(t, Options{IPLimit: ip, LoginLimit: login}, up)
	tb, err := route.Parse("/api/v1/sessions=order", time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	p.o.Table, p.o.Upstreams = tb, pool
	const raw = "POST /api/v1/sessions HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"

	var req fasthttp.Request
	var resp fasthttp.Response
	if err := req.Read(bufioReader(raw)); err != nil {
		t.Fatal(err)
	}
	x := NewExchange(&req, &resp, netip.MustParseAddr("203.0.113.5"), nil)
	defer x.Release()
	if s := p.Begin(x, false); s != Blocked || ip.local != 1 || login.calls != 0 {
		t.Fatalf("Begin(no block): step %v, per-IP local %d, login asked %d; want Blocked, 1, 0", s, ip.local, login.calls)
	}
	if s := p.Begin(x, true); s != Done || resp.StatusCode() != 429 {
		t.Fatalf("resumed: step %v status %d, want Done 429", s, resp.StatusCode())
	}
	p.Finish(x)
	if ip.local != 1 || ip.calls != 0 || login.calls != 1 || up.hits.Load() != 0 {
		t.Fatalf("per-IP local %d and Allow %d, login asked %d, upstream hits %d; want 1, 0, 1, 0", ip.local, ip.calls, login.calls, up.hits.Load())
	}
	if got := string(resp.Header.Peek("Ratelimit")); got != "limit=10, remaining=0, reset=1" {
		t.Fatalf("login refused: RateLimit %q, want the login limit's", got)
	}

	// The per-IP limit refuses first: its fields and its Retry-After.
	ip.allow, login.allow, login.calls = false, true, 0
	ip.limit = 3
	ctx := serve(p, raw)
	if got := ctx.Response.StatusCode(); got != 429 || login.calls != 0 {
		t.Fatalf("per-IP refused: status %d, login asked %d; want 429 and never", got, login.calls)
	}
	if got := string(ctx.Response.Header.Peek("Ratelimit")); got != "limit=3, remaining=0, reset=1" {
		t.Fatalf("per-IP refused: RateLimit %q, want the per-IP limit's", got)
	}
	if got := string(ctx.Response.Header.Peek("Ratelimit-Policy")); got != "3;w=60" {
		t.Fatalf("per-IP refused: RateLimit-Policy %q, want the per-IP limit's", got)
	}
}
