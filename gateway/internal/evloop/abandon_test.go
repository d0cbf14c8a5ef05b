package evloop

import (
	"io"
	"net"
	"net/http"
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
	arrived, closed := make(chan struct{}, 1), make(chan error, 1)
	up := upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) {
		arrived <- struct{}{}
		// Slow: no answer; what the connection does next is the verdict.
		c := w.(*net.TCPConn)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		closed <- err
	})
	pool := upstream.NewPool(staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
	br := &outcomeLog{}
	pool.Service("order").Breaker = br
	tb, err := route.Parse("/api/v1/orders=order", 30*time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	o := proxy.Options{Table: tb}
	addr, _ := startServerOn(t, o, Options{MaxBodyBytes: 1 << 10, Loops: 1}, pool)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	gone := time.Now()
	c.Close()
	// The gateway closes it at once; the upstream waits 2 s for that, far
	// below the 30 s route timeout, for a loaded machine may be slow to
	// show it.
	if err := <-closed; err != io.EOF {
		t.Fatalf("the upstream's connection after the client went: %v (%v later), want it closed (EOF) before the route timeout",
			err, time.Since(gone).Round(time.Millisecond))
	}
	t.Logf("the upstream saw its connection closed %v after the client's close", time.Since(gone).Round(10*time.Microsecond))
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
