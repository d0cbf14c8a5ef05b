package evloop

import (
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
)

// A client that closes its connection while its request waits on a slow
// upstream has the upstream connection closed with it, as nginx does by
// default (proxy_ignore_client_abort off): the upstream's server sees the
// close and can stop the work (a Go service's request context ends), and the
// connection, whose answer nobody can take, is dropped rather than pooled.
// It was held, the upstream working on, until the answer or the route
// timeout. The attempt is no evidence about the upstream (breaker.Ignored).
func TestClientGoneClosesItsUpstreamConnection(t *testing.T) {
	up, leave := upstreamtest.Silent(t, 2*time.Second)
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
	br := &outcomeLog{}
	pool.Service("order").Breaker = br
	tb, err := route.Parse("/api/v1/orders=order", 30*time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	o := proxy.Options{Table: tb}
	addr, _ := startServerOn(t, o, Options{MaxBodyBytes: 1 << 10, Loops: 1}, pool)

	// The gateway closes it at once; the upstream waits 2 s for that, far
	// below the 30 s route timeout, for a loaded machine may be slow to
	// show it.
	took := leave(addr, "GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
	t.Logf("the upstream saw its connection closed %v after the client's close", took.Round(10*time.Microsecond))
	waitFor(t, "the abandoned attempt's breaker outcome", func() bool { return br.count() == 1 })
	if o := br.last(); o != breaker.Ignored {
		t.Fatalf("the abandoned attempt was reported to the breaker as %v, want Ignored", o)
	}
}

func (b *outcomeLog) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

func (b *outcomeLog) last() breaker.Outcome {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got[len(b.got)-1]
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}
