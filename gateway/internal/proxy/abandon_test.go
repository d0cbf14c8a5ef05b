package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
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
	gw := serveFasthttp(t, pool, 2)

	for i := range 5 { // the breaker's MinRequests: counted as failures, they would open it
		// The gateway closes it within a watchTick; the upstream waits 2 s
		// for that, far below the 30 s route timeout, for a loaded machine
		// may be slow to show it.
		took := leave(gw, "GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
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

// Clients leaving mid-request close their upstream connections while other
// clients' requests wait for one (MaxConns): none of those may fail. A
// closed connection's waiter got a new connection dialled with no timeout,
// which the pool's dialer refused at once (a 502 for a request whose client
// stayed). The upstream's delay is its work, not a synchronisation.
func TestFasthttpClientsGoneDoNotFailTheOthers(t *testing.T) {
	up := upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) {
		time.Sleep(10 * time.Millisecond)
		upstreamtest.OK(w, "ok")
	})
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{MaxConns: 3})
	gw := serveFasthttp(t, pool, 1)

	const clients, requests = 9, 20
	failed := make(chan string, clients*requests)
	var wg sync.WaitGroup
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c net.Conn
			var br *bufio.Reader
			for i := range requests {
				if c == nil {
					var err error
					if c, err = net.Dial("tcp", gw); err != nil {
						failed <- err.Error()
						return
					}
					br = bufio.NewReader(c)
				}
				if _, err := io.WriteString(c, "GET /api/v1/orders/x HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
					failed <- err.Error()
					return
				}
				if g%3 == 0 && i%2 == 0 { // a third of the clients leave every other request
					time.Sleep(time.Duration(i) * time.Millisecond)
					c.Close()
					c = nil
					continue
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					failed <- err.Error()
					c.Close()
					c = nil
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 {
					failed <- fmt.Sprintf("%d %s", resp.StatusCode, body)
				}
			}
			if c != nil {
				c.Close()
			}
		}()
	}
	wg.Wait()
	close(failed)
	n := 0
	for f := range failed {
		if n++; n <= 3 {
			t.Errorf("a staying client's request: %s", f)
		}
	}
	if n > 0 {
		t.Fatalf("%d of the staying clients' requests failed", n)
	}
}

// serveFasthttp serves /api/v1/orders from pool's order service on the
// fasthttp transport, as run.go does (sockio.Listener, whose connections
// clientWatch can look at), and returns the gateway's address.
func serveFasthttp(t *testing.T, pool *upstream.Pool, maxAttempts int) string {
	t.Helper()
	tb, err := route.Parse("/api/v1/orders=order", 30*time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Table: tb, Upstreams: pool, MaxAttempts: maxAttempts})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: p.Handle}
	go func() { _ = srv.Serve(sockio.Listener{Listener: ln}) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}
