package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
)

// A request that finds every connection to its endpoint busy
// (GATEWAY_UPSTREAM_MAX_CONNS reached) waits for one, within its deadline,
// as on the event loop, whose requests queue for their pool. On the
// fasthttp transport it was answered 502 upstream-unreachable at once and
// counted as the upstream's failure (breaker, adaptive limit), though the
// upstream never saw it.
//
// The busy connection may also end closed (here the answer's
// Connection: close; a client gone, clientWatch, is another way): fasthttp
// then dials a connection for the waiting request with no timeout given
// (HostClient.dialConnFor), which the pool's dialer took as a timeout of
// 0, already over: the waiting request got 502 upstream-unreachable at
// once, though the upstream was up.
func TestRequestBeyondMaxConnsWaitsForAConnection(t *testing.T) {
	t.Run("reused", func(t *testing.T) { waitForTheOneConnection(t, false) })
	t.Run("closed", func(t *testing.T) { waitForTheOneConnection(t, true) })
}

// waitForTheOneConnection runs TestRequestBeyondMaxConnsWaitsForAConnection,
// the busy connection closed after its answer when closeHeld is set.
func waitForTheOneConnection(t *testing.T, closeHeld bool) {
	arrived, release := make(chan struct{}, 2), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	addr := upstreamtest.Raw(t, func(w io.Writer, req *http.Request) {
		arrived <- struct{}{}
		if strings.HasSuffix(req.URL.Path, "/held") {
			<-release
			if closeHeld {
				body := "upstream:" + req.URL.Path
				_, _ = fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				return
			}
		}
		upstreamtest.OK(w, "upstream:"+req.URL.Path)
	})
	t.Cleanup(free) // after Raw's, so it runs first: Raw's waits for the held handler
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: addr, Version: "v1"}}}, []string{"order"},
		upstream.ClientOptions{MaxConns: 1})
	tb, err := route.Parse("/api/v1/products=order", 5*time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Table: tb, Upstreams: pool, MaxAttempts: 1})

	held := make(chan *fasthttp.RequestCtx, 1)
	go func() { held <- serve(p, "GET /api/v1/products/held HTTP/1.1\r\nHost: gw\r\n\r\n") }()
	<-arrived // the only connection is busy from here until release
	second := make(chan *fasthttp.RequestCtx, 1)
	go func() { second <- serve(p, "GET /api/v1/products/second HTTP/1.1\r\nHost: gw\r\n\r\n") }()
	select {
	case ctx := <-second:
		t.Fatalf("answered while the one connection was busy: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	case <-time.After(200 * time.Millisecond):
		// Still waiting (or not yet asking): either way it must get the
		// connection once the first request is done.
	}
	free()
	for _, c := range []struct {
		ch   chan *fasthttp.RequestCtx
		body string
	}{{held, "upstream:/api/v1/products/held"}, {second, "upstream:/api/v1/products/second"}} {
		ctx := <-c.ch
		if ctx.Response.StatusCode() != 200 || string(ctx.Response.Body()) != c.body {
			t.Errorf("got %d %s, want 200 %s", ctx.Response.StatusCode(), ctx.Response.Body(), c.body)
		}
	}
}
