package evloop

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
)

// A client that pipelines requests and does not read the answers gets no
// more of them proxied than its socket takes: the next request waits for
// the last answer to leave the loop's buffer. Served on, every answer was
// proxied and held in memory until the write timeout (here 40 MiB for
// one connection; 16 MiB answers at the IP limit's burst are gigabytes).
// Once the client reads, the rest are answered, in order.
func TestClientNotReadingGetsNoMoreAnswers(t *testing.T) {
	const n, size = 40, 1 << 20
	c, _, hits := bigAnswers(t, size)
	var raw strings.Builder
	for i := range n {
		fmt.Fprintf(&raw, "GET /api/v1/orders/%d HTTP/1.1\r\nHost: gw\r\n\r\n", i)
	}
	if _, err := io.WriteString(c, raw.String()); err != nil {
		t.Fatal(err)
	}
	// The socket buffers hold a few answers at most (Linux grows a send
	// buffer to 4 MiB): all n proxied means nothing held the rest back.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if h := hits.Load(); h == n {
			t.Fatalf("all %d requests proxied while the client read none of %d MiB of answers", h, n*size>>20)
		}
	}
	br := bufio.NewReaderSize(c, 64<<10)
	for i := range n {
		var r fasthttp.Response
		if err := r.Read(br); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if r.StatusCode() != 200 || len(r.Body()) != size {
			t.Fatalf("answer %d: %d, %d bytes", i, r.StatusCode(), len(r.Body()))
		}
	}
	if h := hits.Load(); h != n {
		t.Fatalf("upstream saw %d requests, want %d", h, n)
	}
}

// An answer that closes the connection (Connection: close here; HTTP/1.0,
// and every answer while the gateway drains) reaches a client that reads it
// later whole, however much of it the socket did not take at once. The loop
// closed the connection right after handing the answer to gnet, which drops
// what is still in its buffer on close: the client read a cut body.
func TestClosingAnswerBiggerThanTheSocketTakesArrivesWhole(t *testing.T) {
	const size = 8 << 20 // more than loopback's socket buffers hold
	c, _, hits := bigAnswers(t, size)
	if _, err := io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for hits.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	// A client slower than the gateway: it starts reading once the answer
	// has been handed over (the close followed at once before).
	time.Sleep(300 * time.Millisecond)
	var r fasthttp.Response
	if err := r.Read(bufio.NewReaderSize(c, 64<<10)); err != nil {
		t.Fatalf("answer: %v (%d of %d bytes of body)", err, len(r.Body()), size)
	}
	if r.StatusCode() != 200 || len(r.Body()) != size {
		t.Fatalf("answer: %d, %d bytes, want 200, %d", r.StatusCode(), len(r.Body()), size)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection not closed after the answer: %v", err)
	}
}

// A drain answers the requests a client pipelined behind an answer still
// being written, and writes that answer and theirs out before the engine
// closes the connections: Stop waited only for requests being proxied,
// so the engine's close cut the answer in the loop's buffer, and the
// request behind it (waiting for that answer to leave) was never answered.
func TestDrainWritesOutTheAnswersOfAClientSlowToRead(t *testing.T) {
	const size = 4 << 20
	c, s, hits := bigAnswers(t, size)
	raw := "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\nGET /api/v1/orders/2 HTTP/1.1\r\nHost: gw\r\n\r\n"
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	for hits.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	stopped := stopInBackground(s, 10*time.Second)
	// A client slower than the gateway: it reads once the drain is under
	// way (Stop found nothing in flight and closed everything before).
	time.Sleep(300 * time.Millisecond)
	br := bufio.NewReaderSize(c, 64<<10)
	for i := range 2 {
		var r fasthttp.Response
		if err := r.Read(br); err != nil {
			t.Fatalf("answer %d: %v (%d of %d bytes of body; upstream saw %d)", i, err, len(r.Body()), size, hits.Load())
		}
		if r.StatusCode() != 200 || len(r.Body()) != size {
			t.Fatalf("answer %d: %d, %d bytes, want 200, %d", i, r.StatusCode(), len(r.Body()), size)
		}
		if r.ConnectionClose() {
			// The first answer was still coming from the upstream when
			// the drain began: it said close, and the request behind it
			// is the client's to send again (it was never proxied).
			if _, err := br.ReadByte(); err != io.EOF || hits.Load() != int64(i+1) {
				t.Fatalf("after answer %d with Connection: close: %v, upstream saw %d", i, err, hits.Load())
			}
			break
		}
		if i == 1 {
			t.Fatalf("answer %d while draining without Connection: close", i)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// bigAnswers serves the order route (one loop, a 10 s route timeout: these
// tests move megabytes per request, which a loaded machine under -race may
// take more than the usual 300 ms to proxy) from an upstream answering every
// request with size bytes, and returns a client connection to it with a 20 s
// deadline, the server, and the upstream's request count.
func bigAnswers(t *testing.T, size int) (net.Conn, *Server, *atomic.Int64) {
	t.Helper()
	hits := new(atomic.Int64)
	body := strings.Repeat("x", size)
	up := upstreamtest.Raw(t, func(w io.Writer, req *http.Request) {
		hits.Add(1)
		upstreamtest.OK(w, body)
	})
	c, s := dialOrderFrom(t, up, Options{MaxBodyBytes: 1 << 10, Loops: 1})
	return c, s, hits
}

// dialOrderFrom serves the order route from up (a 10 s route timeout) with
// so and returns a client connection to it with a 20 s deadline.
func dialOrderFrom(t *testing.T, up string, so Options) (net.Conn, *Server) {
	t.Helper()
	return dialOrderOn(t, orderPool(up), so)
}

// dialOrderOn is dialOrderFrom over a pool the test has made (orderPool),
// so that it can set the service's breaker or budget first.
func dialOrderOn(t *testing.T, pool *upstream.Pool, so Options) (net.Conn, *Server) {
	t.Helper()
	tb, err := route.Parse("/api/v1/orders=order", 10*time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	addr, s := startServerOn(t, proxy.Options{Table: tb}, so, pool)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, s
}

// orderPool is a pool with one instance of the order service, at up.
func orderPool(up string) *upstream.Pool {
	return upstream.NewPool(staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}}, []string{"order"}, upstream.ClientOptions{})
}

// getOrderOn is dialOrderOn, with a GET sent on the connection.
func getOrderOn(t *testing.T, pool *upstream.Pool, so Options) (net.Conn, *Server) {
	t.Helper()
	c, s := dialOrderOn(t, pool, so)
	if _, err := io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c, s
}
