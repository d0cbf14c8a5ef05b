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
	var hits atomic.Int64
	body := strings.Repeat("x", size)
	up := upstreamtest.Raw(t, func(w io.Writer, req *http.Request) {
		hits.Add(1)
		upstreamtest.OK(w, body)
	})
	addr, _, _ := startServerWith(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 10, Loops: 1},
		staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
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
