package evloop

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
)

// A connection that sends nothing has GATEWAY_READ_TIMEOUT for its first
// request, counted from the accept, as on the fasthttp transport (which
// sets that deadline at the accept): 408 and closed. The loop counted it
// idle, as if it were a keep-alive connection between requests, and held
// it for the idle timeout (60 s by default against 5 s), so connections
// opened and left silent held the gateway's sockets twelve times as long.
func TestSilentConnectionGetsTheReadTimeout(t *testing.T) {
	const read, idle = 300 * time.Millisecond, time.Minute
	addr := startServer(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 10, ReadTimeout: read, IdleTimeout: idle})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(10 * read))
	br := bufio.NewReader(c)
	var r fasthttp.Response
	if err := r.Read(br); err != nil {
		t.Fatalf("no answer to a connection silent for %v (read timeout %v): %v", time.Since(start).Round(time.Millisecond), read, err)
	}
	if r.StatusCode() != 408 {
		t.Fatalf("status %d, want 408", r.StatusCode())
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after the 408: %v", err)
	}
}
