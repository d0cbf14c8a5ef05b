package evloop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/gateway/internal/metrictest"
	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
)

// chunkedHead starts a chunked request whose body never ends.
const chunkedHead = "POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"

// TestSlowChunkedClientsPastTheBudgetGet503: clients sending 1-byte chunks
// and never the end each hold 100 KB, under the body limit's bound; the
// budget takes two of them, the others are answered 503 gateway-busy and
// closed, and another client is still served meanwhile. When all have
// gone the budget is back to 0.
func TestSlowChunkedClientsPastTheBudgetGet503(t *testing.T) {
	const clients, chunks = 6, 20000 // 5 bytes each: 100 KB a client
	addr, s := startServerS(t, proxy.Options{}, Options{MaxBodyBytes: 64 << 10, HeldBytes: 256 << 10, ReadTimeout: time.Minute})
	type answer struct {
		status      int
		ctype, body string
		retry       string
		closed      bool
	}
	answers := make(chan answer, clients)
	var conns []net.Conn
	framing := chunkedHead + strings.Repeat("1\r\nx\r\n", chunks)
	for range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(time.Minute)) // a guard: a held client is answered only when it goes
		go func() {
			// The server may stop reading a refused client's bytes
			// (lingering drops them); its write fails then, which is fine.
			_, _ = io.WriteString(c, framing)
		}()
		go func() {
			br := bufio.NewReader(c)
			var r fasthttp.Response
			if err := r.Read(br); err != nil {
				answers <- answer{} // no answer: held until the client went
				return
			}
			_, err := br.ReadByte()
			answers <- answer{r.StatusCode(), string(r.Header.ContentType()), string(r.Body()), string(r.Header.Peek("Retry-After")), err == io.EOF}
		}()
	}
	waitFor(t, "four clients refused", func() bool { return s.budget.refused.Load() >= clients-2 })
	if held, limit := s.budget.held.Load(), s.budget.limit; held > limit {
		t.Errorf("held %d bytes with a budget of %d", held, limit)
	}
	r := roundTrips(t, addr, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]
	if r.StatusCode() != 200 {
		t.Fatalf("a normal request beside the held ones: %d %q", r.StatusCode(), r.Body())
	}
	for _, c := range conns {
		c.Close()
	}
	var refused int
	for range clients {
		a := <-answers
		if a.status == 0 {
			continue
		}
		refused++
		if a.status != 503 || a.ctype != "application/problem+json" || !strings.Contains(a.body, "gateway-busy") || a.retry != "1" || !a.closed {
			t.Errorf("refused client got %+v, want 503 gateway-busy problem+json with Retry-After, then the connection's end", a)
		}
	}
	if int64(refused) != s.budget.refused.Load() || refused < clients-2 {
		t.Errorf("%d clients answered, %d refusals counted, want at least %d", refused, s.budget.refused.Load(), clients-2)
	}
	waitFor(t, "the budget back to 0 after every client went", func() bool { return s.budget.held.Load() == 0 })
}

// TestHeldBytesReleasedOnEveryExit: what a client held is released when its
// request is handed on (and answered), refused, timed out, or when it goes,
// for a chunked body and one with a Content-Length.
func TestHeldBytesReleasedOnEveryExit(t *testing.T) {
	addr, s := startServerS(t, proxy.Options{}, Options{MaxBodyBytes: 64 << 10, HeldBytes: 1 << 20, ReadTimeout: 500 * time.Millisecond, Linger: time.Hour})
	partChunked := chunkedHead + strings.Repeat("1\r\nx\r\n", 6000) // 30 KB
	partLength := "POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: 60000\r\n\r\n" + strings.Repeat("x", 30000)
	for _, c := range []struct {
		name, first, rest string
		status            int // 0: the client goes without an answer
	}{
		{"answered chunked", partChunked, "0\r\n\r\n", 200},
		{"answered with a length", partLength, strings.Repeat("x", 30000), 200},
		{"refused chunked", partChunked, "zz\r\n", 400},
		{"timed out chunked", partChunked, "", 408},
		{"timed out with a length", partLength, "", 408},
		{"gone chunked", partChunked, "", 0},
		{"gone with a length", partLength, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, c.first); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the first part held", func() bool { return s.budget.held.Load() >= 30000-16<<10 })
			if c.status == 0 {
				conn.Close()
			} else {
				if _, err := io.WriteString(conn, c.rest); err != nil {
					t.Fatal(err)
				}
				var r fasthttp.Response
				if err := r.Read(bufio.NewReader(conn)); err != nil || r.StatusCode() != c.status {
					t.Fatalf("status %d err %v, want %d", r.StatusCode(), err, c.status)
				}
			}
			// With the connection still open (but for gone): nothing is
			// held for it any more.
			waitFor(t, fmt.Sprintf("held back to 0 (now %d)", s.budget.held.Load()), func() bool { return s.budget.held.Load() == 0 })
		})
	}
}

// TestHeldBytesReleasedWhenAPausedClientResumes: a request pipelined
// behind one whose answer the client does not read yet is charged while it
// waits; when the sweep resumes the client and that request is answered at
// once (404, no upstream), the charge goes with it, not when the client
// next sends or closes (the idle timeout, 60 s by default, later).
func TestHeldBytesReleasedWhenAPausedClientResumes(t *testing.T) {
	const size = 12 << 20 // more than the sockets take: the client is paused
	body := strings.Repeat("x", size)
	up := upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) { upstreamtest.OK(w, body) })
	addr, s, _ := startServerTimed(t, proxy.Options{}, Options{MaxBodyBytes: 64 << 10, HeldBytes: 1 << 20, Loops: 1},
		staticRes{"order": {{ID: "a", Addr: up, Version: "v1"}}}, 10*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	behind := "POST /nowhere HTTP/1.1\r\nHost: gw\r\nContent-Length: 40000\r\n\r\n" + strings.Repeat("y", 40000)
	if _, err := io.WriteString(c, "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n"+behind); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request behind charged", func() bool { return s.budget.held.Load() > 0 })
	br := bufio.NewReaderSize(c, 64<<10)
	for i, want := range []int{200, 404} {
		var r fasthttp.Response
		if err := r.Read(br); err != nil || r.StatusCode() != want {
			t.Fatalf("answer %d: %d %v, want %d", i, r.StatusCode(), err, want)
		}
	}
	waitFor(t, "held back to 0 with the client open and idle", func() bool { return s.budget.held.Load() == 0 })
}

// TestBudgetMetricsGoWithTheServer: the budget's gauge and counter report
// while the server serves, and not after Serve returns: registered for good,
// a process that lives on (cmd/shanhai restarting the gateway) reported a
// stopped server's budget beside the next one's, and kept it in memory.
func TestBudgetMetricsGoWithTheServer(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	_, s := startServerS(t, proxy.Options{}, Options{HeldBytes: 1 << 20, Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if got := metrictest.Int64s(t, reader); len(got) != 4 {
		t.Fatalf("while serving: %v, want the held and connections gauges and their refusals counters", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	<-s.served
	if got := metrictest.Int64s(t, reader); len(got) != 0 {
		t.Errorf("after Serve returned the budget still reports %v", got)
	}
}

// TestHeldBytesBackToZeroAfterMixedTraffic: keep-alive clients pipelining a
// mix of requests (bodies with a length, answered by the upstream, by the gateway itself (404) and at the route timeout (504))
// leave nothing charged once all are answered, with every connection still
// open: a charge left behind on any of these paths would add up until the
// budget refused everything.
func TestHeldBytesBackToZeroAfterMixedTraffic(t *testing.T) {
	const clients, rounds = 6, 3
	addr, s := startServerS(t, proxy.Options{}, Options{MaxBodyBytes: 64 << 10, HeldBytes: 8 << 20, ReadTimeout: time.Minute})
	withLength := func(path string, n int) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s", path, n, strings.Repeat("x", n))
	}
	// A chunked request closes its connection after its answer (proxy's
	// checkHead): TestHeldBytesReleasedOnEveryExit has those.
	round := withLength("/api/v1/orders/echo", 30000) + withLength("/nowhere", 20000) +
		"GET /api/v1/orders/slow HTTP/1.1\r\nHost: gw\r\n\r\n" + withLength("/api/v1/orders/echo", 20000)
	want := []int{200, 404, 504, 200}
	errs := make(chan error, clients)
	for range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		go func() {
			br := bufio.NewReaderSize(c, 64<<10)
			for i := range rounds {
				if _, err := io.WriteString(c, round); err != nil {
					errs <- err
					return
				}
				for j, status := range want {
					var r fasthttp.Response
					if err := r.Read(br); err != nil || r.StatusCode() != status {
						errs <- fmt.Errorf("round %d answer %d: %d %v, want %d", i, j, r.StatusCode(), err, status)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "held back to 0 with every client open", func() bool { return s.budget.held.Load() == 0 })
	if n := s.budget.refused.Load(); n != 0 {
		t.Errorf("%d refusals under an 8 MiB budget", n)
	}
}

// TestHeldBytesReleasedWhenA505IsWritten: the body of a request refused 505
// at its head (the connection then closed by lingering) is not read on; it
// was left in gnet's buffer, charged, until the client's next bytes or the
// linger's end (an hour here, a second by default).
func TestHeldBytesReleasedWhenA505IsWritten(t *testing.T) {
	addr, s := startServerS(t, proxy.Options{}, Options{MaxBodyBytes: 64 << 10, HeldBytes: 1 << 20, Linger: time.Hour})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "POST /api/v1/orders HTTP/2.0\r\nHost: gw\r\nContent-Length: 60000\r\n\r\n"+strings.Repeat("x", 40000)); err != nil {
		t.Fatal(err)
	}
	var r fasthttp.Response
	if err := r.Read(bufio.NewReader(c)); err != nil || r.StatusCode() != 505 {
		t.Fatalf("status %d err %v, want 505", r.StatusCode(), err)
	}
	waitFor(t, fmt.Sprintf("held back to 0 after the 505 (now %d)", s.budget.held.Load()), func() bool { return s.budget.held.Load() == 0 })
}

// TestClientReadingPastTheBudgetGetsItsAnswer: a client that sends far
// ahead (past the budget) while its request is upstream gets that
// request's answer, with Connection: close, and then the connection's end;
// what it sent ahead is dropped, not held. It was closed without an
// answer, the upstream's work thrown away.
func TestClientReadingPastTheBudgetGetsItsAnswer(t *testing.T) {
	got, release := make(chan struct{}, 1), make(chan struct{})
	up := upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) {
		got <- struct{}{}
		<-release
		upstreamtest.OK(w, "answer")
	})
	c, s := getPastTheBudget(t, up, Options{Linger: time.Hour})
	<-got
	readAhead(t, c, s)
	close(release)
	br := bufio.NewReader(c)
	var r fasthttp.Response
	if err := r.Read(br); err != nil || r.StatusCode() != 200 || string(r.Body()) != "answer" || !r.ConnectionClose() {
		t.Fatalf("got %d %q close=%v err %v, want the upstream's 200 with Connection: close", r.StatusCode(), r.Body(), r.ConnectionClose(), err)
	}
	closedAndReleased(t, br, s)
}

// TestPausedClientReadingPastTheBudgetGetsItsAnswer: as above for a client
// whose answer waits in the loop's buffer (it does not read yet): the
// answer arrives whole, then the connection's end. It was cut off.
func TestPausedClientReadingPastTheBudgetGetsItsAnswer(t *testing.T) {
	const size = 12 << 20 // more than the sockets take: the client is paused
	body := strings.Repeat("x", size)
	c, s := getPastTheBudget(t, upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) { upstreamtest.OK(w, body) }), Options{Linger: time.Hour})
	// Its first bytes out: the answer is written (reply), most of it
	// waiting in the loop's buffer, as no socket takes 12 MiB.
	br := bufio.NewReaderSize(c, 64<<10)
	if _, err := br.Peek(12); err != nil {
		t.Fatal(err)
	}
	readAhead(t, c, s)
	var r fasthttp.Response
	if err := r.Read(br); err != nil || r.StatusCode() != 200 || len(r.Body()) != size {
		t.Fatalf("got %d, %d bytes, err %v, want the upstream's 200 whole", r.StatusCode(), len(r.Body()), err)
	}
	closedAndReleased(t, br, s)
}

// TestSlowClientReadingPastTheBudgetGetsItsAnswer: as above for a client
// that reads its 12 MiB answer slowly, starting well after the linger's
// end: the linger counts from the FIN, once the answer has left (the write
// timeout bounds it until then). Counted from the answer's write, the
// sweep closed the connection a Linger later, and gnet dropped what the
// socket had not taken: the answer was cut.
func TestSlowClientReadingPastTheBudgetGetsItsAnswer(t *testing.T) {
	const size = 12 << 20
	body := strings.Repeat("x", size)
	const linger = 50 * time.Millisecond
	c, s := getPastTheBudget(t, upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) { upstreamtest.OK(w, body) }),
		Options{Linger: linger, WriteTimeout: 10 * time.Second})
	br := bufio.NewReaderSize(c, 64<<10)
	if _, err := br.Peek(12); err != nil {
		t.Fatal(err)
	}
	readAhead(t, c, s)
	time.Sleep(10 * linger) // a slow reader: nothing read for ten Lingers (some 50 sweeps)
	var r fasthttp.Response
	if err := r.Read(br); err != nil || r.StatusCode() != 200 || len(r.Body()) != size {
		t.Fatalf("got %d, %d bytes, err %v, want the upstream's 200 whole", r.StatusCode(), len(r.Body()), err)
	}
	closedAndReleased(t, br, s)
}

// TestStopWaitsForALingeringClientsAnswer: a Stop while the answer of a
// client refused past the budget (paused: its answer in the loop's buffer)
// is still being written waits for it, as for any answer in the buffer
// (count). Uncounted, it was cut by the engine's close.
func TestStopWaitsForALingeringClientsAnswer(t *testing.T) {
	const size = 12 << 20
	body := strings.Repeat("x", size)
	c, s := getPastTheBudget(t, upstreamtest.Raw(t, func(w io.Writer, _ *http.Request) { upstreamtest.OK(w, body) }),
		Options{Linger: time.Hour, WriteTimeout: 10 * time.Second})
	br := bufio.NewReaderSize(c, 64<<10)
	if _, err := br.Peek(12); err != nil {
		t.Fatal(err)
	}
	readAhead(t, c, s)
	stopped := stopInBackground(s, 10*time.Second)
	waitFor(t, "draining", s.draining.Load)
	time.Sleep(100 * time.Millisecond) // a slow reader: nothing read while the stop goes on (ten Ticks)
	var r fasthttp.Response
	if err := r.Read(br); err != nil || r.StatusCode() != 200 || len(r.Body()) != size {
		t.Fatalf("got %d, %d bytes, err %v, want the upstream's 200 whole", r.StatusCode(), len(r.Body()), err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// getPastTheBudget serves the order route from up with a 256 KiB budget
// (and so's Linger and WriteTimeout) and sends a GET on a new connection,
// which it returns.
func getPastTheBudget(t *testing.T, up string, so Options) (net.Conn, *Server) {
	t.Helper()
	so.MaxBodyBytes, so.HeldBytes, so.Loops = 1<<20, 256<<10, 1
	return getOrderOn(t, orderPool(up), so)
}

// readAhead sends 400 KB past the budget on c and waits for its refusal.
func readAhead(t *testing.T, c net.Conn, s *Server) {
	t.Helper()
	go func() { _, _ = io.WriteString(c, strings.Repeat("y", 400<<10)) }() // dropped from the refusal on: the write may not finish
	waitFor(t, "the read-ahead refused", func() bool { return s.budget.refused.Load() == 1 })
}

// closedAndReleased: after the answer br has read, the connection ends and
// nothing is held.
func closedAndReleased(t *testing.T, br *bufio.Reader, s *Server) {
	t.Helper()
	if _, err := br.ReadByte(); err == nil {
		t.Error("the connection was not closed after the answer")
	}
	waitFor(t, fmt.Sprintf("held back to 0 (now %d)", s.budget.held.Load()), func() bool { return s.budget.held.Load() == 0 })
}
