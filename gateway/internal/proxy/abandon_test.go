package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/sockio"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
)

// On the fasthttp transport, a client that closes its connection while its
// request waits on a slow upstream has the upstream connection closed with
// it (clientWatch), as on the event loop and in nginx's default: the
// goroutine waited in the pool's call, reading nothing from the client, so
// the upstream worked on, holding the connection and a concurrency slot,
// until the answer or the route timeout (30 s here). Each attempt is
// Ignored by the breaker and frees its slot without moving the limit.
func TestFasthttpClientGoneClosesItsUpstreamConnection(t *testing.T) {
	up, leave := upstreamtest.Silent(t, 2*time.Second)
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
	br, lim := guarded(t, pool)
	tb, err := route.Parse("/api/v1/orders=order", 30*time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Table: tb, Upstreams: pool, MaxAttempts: 2})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: p.Handle}
	go func() { _ = srv.Serve(sockio.Listener{Listener: ln}) }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	for i := range 5 { // the breaker's MinRequests: counted as failures, they would open it
		// The gateway closes it within a watchTick; the upstream waits 2 s
		// for that, far below the 30 s route timeout, for a loaded machine
		// may be slow to show it.
		took := leave(ln.Addr().String(), "GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
		t.Logf("request %d: the upstream saw its connection closed %v after the client's close", i, took.Round(100*time.Microsecond))
		for end := time.Now().Add(5 * time.Second); lim.InFlight() != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("request %d: its concurrency slot is still held 5 s after the client went", i)
			}
		}
	}
	if br.State() != breaker.Closed || lim.Limit() != 2 {
		t.Fatalf("after 5 clients gone: breaker %v, limit %d; want closed, 2", br.State(), lim.Limit())
	}
}
