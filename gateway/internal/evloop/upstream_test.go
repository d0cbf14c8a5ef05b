package evloop

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
)

// movingRes is discovery whose instances a test changes.
type movingRes struct {
	mu  sync.Mutex
	ins []upstream.Instance
}

func (m *movingRes) Instances(string) []upstream.Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]upstream.Instance(nil), m.ins...)
}

func (m *movingRes) set(ins ...upstream.Instance) {
	m.mu.Lock()
	m.ins = ins
	m.mu.Unlock()
}

// A loop's keep-alive connections to an endpoint that left discovery are
// closed within a sweep or two, not after UpstreamIdle (30 s by default);
// requests go to the endpoint that replaced it.
func TestConnectionsToALeftEndpointClose(t *testing.T) {
	oldAddr, oldClosed := startUpstream(t)
	newAddr, _ := startUpstream(t)
	res := &movingRes{}
	res.set(upstream.Instance{ID: "a", Addr: oldAddr, Version: "v1"})
	addr, _, pool := startServerWith(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 10}, res)

	// Two connections in flight at once leave two idle upstream connections.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if r := roundTrips(t, addr, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]; r.StatusCode() != 200 {
				t.Errorf("before the move: %d", r.StatusCode())
			}
		})
	}
	wg.Wait()
	if n := oldClosed.Load(); n != 0 {
		t.Fatalf("%d upstream connections closed before the endpoint left", n)
	}

	res.set(upstream.Instance{ID: "b", Addr: newAddr, Version: "v1"})
	pool.Refresh()
	deadline := time.Now().Add(time.Second)
	for oldClosed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if oldClosed.Load() == 0 {
		t.Fatal("connections to the endpoint that left are still open after 1s")
	}
	r := roundTrips(t, addr, "GET /api/v1/orders/2 HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]
	if r.StatusCode() != 200 || !strings.HasPrefix(string(r.Body()), "upstream:/api/v1/orders/2:") {
		t.Fatalf("after the move: %d %q", r.StatusCode(), r.Body())
	}
}

// The loop dials with a timeout of its own: one that cannot succeed fails
// the waiting request at once (502) instead of leaving it to the route
// deadline (504).
func TestDialTimeout(t *testing.T) {
	// A listener that is never accepted from still completes handshakes;
	// a dial that must finish in a nanosecond cannot.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	res := &movingRes{}
	res.set(upstream.Instance{ID: "a", Addr: ln.Addr().String(), Version: "v1"})
	addr, _, _ := startServerWith(t, proxy.Options{}, Options{MaxBodyBytes: 1 << 10, DialTimeout: time.Nanosecond}, res)
	start := time.Now()
	r := roundTrips(t, addr, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]
	if r.StatusCode() != 502 || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("status %d after %v, want 502 well before the 300ms route deadline", r.StatusCode(), time.Since(start))
	}
}

// An interim answer (103 Early Hints, which the chain turns into a 502)
// means the final one is still coming on that connection: it must not be
// handed to the next request, or that client gets another's answer.
func TestInterimAnswerDropsTheConnection(t *testing.T) {
	up := upstreamtest.Raw(t, func(w io.Writer, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/hints") {
			time.Sleep(60 * time.Millisecond) // the second request is waiting by now
			_, _ = io.WriteString(w, "HTTP/1.1 103 Early Hints\r\n\r\n")
			time.Sleep(60 * time.Millisecond)
		}
		upstreamtest.OK(w, "upstream:"+req.URL.Path)
	})
	res := &movingRes{}
	res.set(upstream.Instance{ID: "a", Addr: up, Version: "v1"})
	// One connection, so that the second request waits for it; no retry,
	// so that the first makes one attempt.
	addr, _, _ := startServerWith(t, proxy.Options{MaxAttempts: 1}, Options{MaxBodyBytes: 1 << 10, Loops: 1, MaxConns: 1}, res)
	first := make(chan *fasthttp.Response, 1)
	go func() { first <- roundTrips(t, addr, "GET /api/v1/orders/hints HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0] }()
	time.Sleep(20 * time.Millisecond)
	second := roundTrips(t, addr, "GET /api/v1/orders/second HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]
	if r := <-first; r.StatusCode() != 502 {
		t.Fatalf("interim answer: %d %q, want 502", r.StatusCode(), r.Body())
	}
	if second.StatusCode() != 200 || string(second.Body()) != "upstream:/api/v1/orders/second" {
		t.Fatalf("the request after it: %d %q, want its own answer", second.StatusCode(), second.Body())
	}
}
