package proxy

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
)

// processingThenFailing is an upstream instance that does the work of every
// request it reads (counted in seen) and then fails it the way the gateway
// retries: with a reset connection, or with a 502. The client cannot tell
// whether the work was done.
func processingThenFailing(t *testing.T, reset bool, seen *atomic.Int64) string {
	return upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) {
		seen.Add(1)
		if reset {
			c := w.(*net.TCPConn)
			_ = c.SetLinger(0) // RST, not FIN
			_ = c.Close()
			return
		}
		_, _ = io.WriteString(w, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
	})
}

// keyedProxy routes the user service's and the order service's prefixes to
// the same two instances, the first of which processes and then fails.
// Only the routes named in keyed honour Idempotency-Key.
func keyedProxy(t *testing.T, reset bool, dyn Dynamic, keyed ...string) (p *Proxy, failing, healthy *atomic.Int64) {
	t.Helper()
	failing, healthy = new(atomic.Int64), new(atomic.Int64)
	good := upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) {
		healthy.Add(1)
		upstreamtest.OK(w, "done")
	})
	ins := []upstream.Instance{
		{ID: "a", Addr: processingThenFailing(t, reset, failing), Version: "v1"},
		{ID: "b", Addr: good, Version: "v1"},
	}
	pool := upstream.NewPool(staticRes{"user": ins, "order": ins}, []string{"user", "order"}, upstream.ClientOptions{})
	tb, err := route.Parse("/api/v1/users=user,/api/v1/sessions=user,/api/v1/orders=order", time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	tb, err = tb.WithKeyedRetry(keyed)
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Table: tb, Upstreams: pool, MaxAttempts: 2, Dynamic: func() Dynamic { return dyn }}), failing, healthy
}

// A keyed POST is retried only on a route whose upstream honours
// Idempotency-Key (the order service replays a key's first answer). The user
// service ignores the key: a refresh retried on another instance after the
// first had rotated the token tripped reuse detection and revoked the
// session family (the user was logged out), and a sign-up ran twice.
func TestKeyedPostRetriedOnlyWhereTheUpstreamHonoursTheKey(t *testing.T) {
	for _, failure := range []struct {
		name  string
		reset bool
	}{{"connection reset", true}, {"502", false}} {
		t.Run(failure.name, func(t *testing.T) {
			p, failing, healthy := keyedProxy(t, failure.reset, Dynamic{}, "/api/v1/orders")
			for _, path := range []string{"/api/v1/sessions/refresh", "/api/v1/users"} {
				f0, h0 := failing.Load(), healthy.Load()
				const n = 20
				for range n {
					serve(p, "POST "+path+" HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: k1\r\nContent-Length: 2\r\n\r\n{}")
				}
				failed, ok := failing.Load()-f0, healthy.Load()-h0
				if failed == 0 {
					t.Fatalf("POST %s: no request reached the failing instance; the test proves nothing", path)
				}
				if failed+ok != n {
					t.Fatalf("POST %s with Idempotency-Key: %d requests were processed %d times (%d by the failing instance, then retried): its upstream ignores the key",
						path, n, failed+ok, failed)
				}
			}

			// The order route honours the key: there the failure is retried.
			f0 := failing.Load()
			for i := range 20 {
				ctx := serve(p, "POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: k"+string(rune('a'+i))+"\r\nContent-Length: 2\r\n\r\n{}")
				if ctx.Response.StatusCode() != 200 {
					t.Fatalf("keyed POST /api/v1/orders: %d, want 200 (retried on the healthy instance)", ctx.Response.StatusCode())
				}
			}
			if failing.Load() == f0 {
				t.Fatal("no keyed order reached the failing instance; the test proves nothing")
			}
		})
	}
}

// The dynamic config's keyed_retry overrides a route's flag both ways.
func TestDynamicKeyedRetryOverridesTheRoute(t *testing.T) {
	p, failing, healthy := keyedProxy(t, false, Dynamic{KeyedRetry: map[string]bool{"sessions": true, "orders": false}}, "/api/v1/orders")
	const n = 20
	for i := range n {
		ctx := serve(p, "POST /api/v1/sessions/refresh HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: k"+string(rune('a'+i))+"\r\nContent-Length: 2\r\n\r\n{}")
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("keyed refresh on a route the dynamic config marks keyed: %d, want 200 (retried)", ctx.Response.StatusCode())
		}
	}
	if failing.Load() == 0 {
		t.Fatal("no refresh reached the failing instance; the test proves nothing")
	}
	f0, h0 := failing.Load(), healthy.Load()
	for range n {
		serve(p, "POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: k1\r\nContent-Length: 2\r\n\r\n{}")
	}
	if failed, ok := failing.Load()-f0, healthy.Load()-h0; failed == 0 || failed+ok != n {
		t.Fatalf("keyed orders with keyed_retry off: %d requests processed %d times (%d failed), want each once", n, failed+ok, failed)
	}
}

// The retry decision stays off the allocator for a keyed POST, the one
// request that reads the route's flag and the dynamic override.
func TestKeyedRetryDecisionAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var h fasthttp.RequestHeader
	h.SetMethod("POST")
	h.Set("Idempotency-Key", "k1")
	sent := sentOptional(&h)
	rt := &route.Route{Name: "orders", KeyedRetry: true}
	dyn := map[string]bool{"users": true}
	allocs := testing.AllocsPerRun(100, func() {
		if !isIdempotent(h.Method(), &h, sent, rt, dyn) {
			t.Fatal("a keyed POST on a keyed route is not retryable")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per retry decision, want 0", allocs)
	}
}
