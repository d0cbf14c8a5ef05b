package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream is an upstream whose bytes on the wire the test scripts: it
// answers each request by its path (see behave), so a test can make it
// misbehave in ways a real HTTP server would not. It counts connections
// open, to catch a gateway that leaks them.
type rawUpstream struct {
	ln   net.Listener
	open atomic.Int64
	hits atomic.Int64
	conn atomic.Int64 // accepted in all
	mu   sync.Mutex
	all  []net.Conn
	// dropped: paths whose connection the gateway closed afterwards (the
	// upstream found it closed when reading the next request or writing).
	dropped map[string]bool
}

func startRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, dropped: map[string]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.open.Add(1)
			u.conn.Add(1)
			u.mu.Lock()
			u.all = append(u.all, c)
			u.mu.Unlock()
			go u.serve(c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		u.mu.Lock()
		for _, c := range u.all {
			_ = c.Close()
		}
		u.mu.Unlock()
	})
	return u
}

func (u *rawUpstream) addr() string { return u.ln.Addr().String() }

func (u *rawUpstream) serve(c net.Conn) {
	defer u.open.Add(-1)
	defer c.Close()
	br := bufio.NewReader(c)
	last := ""
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			u.drop(last)
			return
		}
		last = req.URL.Path[strings.LastIndexByte(req.URL.Path, '/')+1:]
		u.hits.Add(1)
		if strings.HasSuffix(req.URL.Path, "/early") {
			// Answers before reading the body, as servers do when they
			// refuse a request (401, 413), and keeps the connection.
			if _, err := io.WriteString(c, answer(req)); err != nil {
				u.drop(last)
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			continue
		}
		b, _ := io.ReadAll(req.Body)
		req.Header.Set("X-Read-Body", string(b))
		if !u.behave(c, req) || req.Close {
			return // req.Close: HTTP/1.0 without keep-alive, as net/http does
		}
	}
}

func (u *rawUpstream) drop(path string) {
	u.mu.Lock()
	u.dropped[path] = true
	u.mu.Unlock()
}

func (u *rawUpstream) wasDropped(path string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dropped[path]
}

// answer is a well-formed answer naming the request, so a test can tell
// whose answer a client got. Like net/http, it closes after answering an
// HTTP/1.0 request without keep-alive (serve).
func answer(req *http.Request) string {
	body := "ok:" + req.URL.Path
	closing := ""
	if req.Close {
		closing = "Connection: close\r\n"
	}
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n%sContent-Length: %d\r\n\r\n%s", closing, len(body), body)
}

// foreign is an answer nobody asked for.
const foreign = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nforeign"

// echo answers with the request's Host, framing and body (which serve
// read into X-Read-Body).
func echo(req *http.Request) string {
	body := fmt.Sprintf("host=%s cl=%d te=%q body=%s", req.Host, req.ContentLength, req.TransferEncoding, req.Header.Get("X-Read-Body"))
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// behave answers req on c by the last segment of its path; false closes
// the connection.
func (u *rawUpstream) behave(c net.Conn, req *http.Request) bool {
	seg := req.URL.Path[strings.LastIndexByte(req.URL.Path, '/')+1:]
	w := func(s string) bool {
		_, err := io.WriteString(c, s)
		if err != nil {
			u.drop(seg)
		}
		return err == nil
	}
	switch seg {
	case "close": // closes before answering
		return false
	case "garbage":
		w("this is not http\r\n\r\n")
		return false
	case "eof-body": // no Content-Length: the body ends with the connection
		w("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\neof-delimited")
		return false
	case "chunked":
		return w("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n")
	case "continue":
		return w("HTTP/1.1 100 Continue\r\n\r\n" + answer(req))
	case "hints":
		return w("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + answer(req))
	case "hints-late":
		if !w("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n") {
			return false
		}
		time.Sleep(50 * time.Millisecond)
		return w(answer(req))
	case "status999":
		return w("HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok")
	case "bighead":
		return w("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("h", 64<<10) + "\r\nContent-Length: 2\r\n\r\nok")
	case "head12k": // a head over 8 KiB, within the 16 KiB a client's head may have
		return w("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("h", 12<<10) + "\r\nContent-Length: 2\r\n\r\nok")
	case "huge":
		const n = 17 << 20 // above the 16 MiB response limit
		if !w(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)) {
			return false
		}
		_, _ = c.Write(make([]byte, n))
		return false
	case "slow":
		time.Sleep(1500 * time.Millisecond)
		return w(answer(req))
	case "twice": // the answer, then a second one nobody asked for
		return w(answer(req) + foreign)
	case "twice-late": // the same, the second answer after a while
		if !w(answer(req)) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
		return w(foreign)
	case "echo": // what framing and body arrived
		return w(echo(req))
	case "target": // the request target and the User-Agent and Cookie lines, as they arrived
		body := fmt.Sprintf("uri=%s ua=%q cookie=%q", req.RequestURI, req.Header["User-Agent"], req.Header["Cookie"])
		return w(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	// Framing the gateway must not trust (RFC 9112 §6.3, §2.2): two
	// lengths, the one parsed last longer or shorter than the body sent;
	// lines ending in a bare LF, throughout or in one field line.
	case "cl-twice":
		return w("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok")
	case "cl-twice-short":
		return w("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 2\r\n\r\nhello")
	case "cl-spaced": // a length the parser takes for another field (RFC 9112 §5.1)
		return w("HTTP/1.1 200 OK\r\nContent-Length : 5\r\nContent-Length: 2\r\n\r\nok")
	case "field-spaced": // any field: a proxy removes the whitespace or refuses (RFC 9112 §5.1)
		return w("HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok")
	case "name-spaced": // a name is a token (RFC 9112 §5), and the parser kept "X A" as it came
		return w("HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 2\r\n\r\nok")
	case "name-tabbed": // the same, refused by the parser itself
		return w("HTTP/1.1 200 OK\r\nX\tA: 1\r\nContent-Length: 2\r\n\r\nok")
	case "continue-cl-twice": // the answer's head after a 100 Continue
		return w("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok")
	case "te-cl": // both framings: the coding wins, and the connection is not reused (RFC 9112 §6.3)
		return w("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\nok\r\n0\r\n\r\n")
	case "cl-same": // the same value twice: one valid length (RFC 9110 §8.6)
		return w("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
	case "bare-lf":
		return w("HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
	case "bare-lf-field":
		return w("HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok")
	// No content (RFC 9110 §15.3.5, §8.6), yet a length and even a body.
	case "nocontent-cl":
		return w("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
	case "nocontent-body":
		return w("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello")
	case "notmodified-body":
		return w("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello")
	case "cookies": // two cookies of one name on different paths and a third, in three spellings, between a hop-by-hop field and two Via lines (keepOrder's path)
		return w("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nset-cookie: sid=a; Path=/\r\nVia: a\r\nSET-COOKIE: sid=b; Path=/api\r\nVia: b\r\nSet-Cookie: theme=dark\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
	case "trailers": // a chunked answer whose trailer section holds a declared field, undeclared ones and a header's name again
		return w("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Checksum\r\nX-Same: head\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\nok\r\n0\r\nX-Checksum: c0ffee\r\nAccess-Control-Allow-Origin: https://evil.example\r\nStrict-Transport-Security: max-age=0\r\nX-Same: trailer\r\n\r\n")
	case "trailer-forbidden": // trailer fields fasthttp's parser refuses outright (RFC 9110 §6.5.1 forbids them there)
		return w("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nSet-Cookie: sid=spoofed\r\nLocation: https://evil.example/\r\n" +
			"Content-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n")
	case "trailer-malformed": // a trailer line without a colon
		return w("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nSet-Cookie\r\n\r\n")
	case "via-order": // a hop-by-hop field ahead of two lines of another
		return w("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nVia: 1.0 a\r\nVia: 1.1 b\r\nContent-Length: 2\r\n\r\nok")
	case "header": // the value of the field the query names, as it arrived
		name := req.URL.Query().Get("name")
		body := name + "=" + strings.Join(req.Header.Values(name), ",")
		return w(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	}
	return w(answer(req))
}

// rawGateway starts a gateway routing the products route (public for GET)
// and the orders route to up, with retries off, so that each request makes
// exactly one attempt, and a breaker that never opens, so that failures on
// purpose do not change later answers.
func rawGateway(w *world, up *rawUpstream, env ...string) *gatewayProc {
	return w.startGateway(append([]string{"DISCOVERY_STATIC=" + w.svc + "=" + up.addr(), "GATEWAY_MAX_ATTEMPTS=1",
		"GATEWAY_BREAKER_MIN_REQUESTS=1000000", "GATEWAY_ROUTE_TIMEOUT=700ms"}, env...)...)
}

// exchange writes raw on a new connection (in pieces, when split says
// where) and reads n answers; it fails the test if one does not come.
func exchange(t *testing.T, addr, raw string, n int, split ...int) []*rawAnswer {
	t.Helper()
	c := dialRaw(t, addr)
	defer c.Close()
	writeSplit(t, c, raw, split...)
	br := bufio.NewReader(c)
	var out []*rawAnswer
	for range n {
		a, err := readAnswer(br)
		if err != nil {
			t.Fatalf("answer %d of %d to %q: %v", len(out)+1, n, trim(raw), err)
		}
		out = append(out, a)
	}
	return out
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func writeSplit(t *testing.T, c net.Conn, raw string, split ...int) {
	t.Helper()
	at := 0
	for _, s := range append(split, len(raw)) {
		if _, err := io.WriteString(c, raw[at:s]); err != nil {
			t.Fatal(err)
		}
		at = s
		time.Sleep(5 * time.Millisecond) // separate reads on the gateway's side
	}
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

type rawAnswer struct {
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header // fields of a chunked answer's trailer section
}

func readAnswer(br *bufio.Reader) (*rawAnswer, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &rawAnswer{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Trailer: resp.Trailer}, nil
}

// problem is the slug of a problem+json answer, "" if it is not one.
func (a *rawAnswer) problem() string {
	var p struct {
		Type string `json:"type"`
	}
	if a.Header.Get("Content-Type") != "application/problem+json" || json.Unmarshal([]byte(a.Body), &p) != nil {
		return ""
	}
	return p.Type[strings.LastIndexByte(p.Type, '/')+1:]
}

// closedAfter says whether the server closes c (after any answers) within
// two seconds: the event loop lets a rejected client linger a second.
func closedAfter(c net.Conn, br *bufio.Reader) bool {
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// get is a request on the products route (public for GET) for path.
func get(path string) string { return "GET /api/v1/products/" + path + " HTTP/1.1\r\nHost: gw\r\n\r\n" }

// metric reads one unlabelled gauge from the gateway's /metrics.
func metric(t *testing.T, g *gatewayProc, name string) float64 {
	t.Helper()
	resp, err := http.Get(g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("no %s on /metrics", name)
	return 0
}

// noLeaks checks, after the hostile traffic, that the gateway holds no
// more sockets than at start besides its pooled upstream connections
// (which up counts): every client connection was closed and every
// dropped upstream connection too.
func noLeaks(t *testing.T, w *world, g *gatewayProc, up *rawUpstream) func() {
	t.Helper()
	// Warm up what the gateway connects to once (the key set, Redis).
	exchange(t, g.Addr, get("warm")+"POST /api/v1/orders/warm HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nAuthorization: Bearer "+
		w.token("warm-user")+"\r\n\r\n", 2)
	base := metric(t, g, "process_open_fds") - float64(up.open.Load())
	return func() {
		t.Helper()
		eventually(t, 5*time.Second, "sockets back to where they started", func() bool {
			fds := metric(t, g, "process_open_fds") - float64(up.open.Load())
			return fds <= base
		})
	}
}

func TestHostileClients(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	g := rawGateway(w, up, "GATEWAY_MAX_BODY_BYTES=1024", "GATEWAY_READ_TIMEOUT=800ms")
	tok := w.token("hostile-user")
	leaks := noLeaks(t, w, g, up)
	ok := func(t *testing.T, a *rawAnswer, path string) {
		t.Helper()
		if a.Status != 200 || a.Body != "ok:/api/v1/products/"+path {
			t.Fatalf("%s: %d %q", path, a.Status, a.Body)
		}
	}
	// bad sends raw and wants one problem answer, then the connection
	// closed.
	bad := func(t *testing.T, raw string, status int, slug string) {
		t.Helper()
		c := dialRaw(t, g.Addr)
		defer c.Close()
		writeSplit(t, c, raw)
		br := bufio.NewReader(c)
		a, err := readAnswer(br)
		if err != nil {
			t.Fatalf("%q: no answer: %v", trim(raw), err)
		}
		if a.Status != status || a.problem() != slug {
			t.Fatalf("%q: %d %q, want %d %s", trim(raw), a.Status, a.Body, status, slug)
		}
		if !closedAfter(c, br) {
			t.Fatalf("%q: connection left open after %d", trim(raw), status)
		}
	}
	post := "POST /api/v1/orders/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + tok + "\r\n"
	for _, tc := range []struct{ name, raw string }{
		{"request line without version", "GET /api/v1/products/a\r\nHost: gw\r\n\r\n"},
		{"request line garbage", "\x00\x01\x02 nonsense\r\n\r\n"},
		{"header without colon", "GET /api/v1/products/a HTTP/1.1\r\nHost: gw\r\nNoColonHere\r\n\r\n"},
		{"bad chunk size", post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
		{"chunk size overflow", post + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
		{"unknown transfer coding", post + "Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
		// The parser took the obsolete "identity" for no coding (the body
		// framed by the length, or none: what follows was read as the next
		// request) and a second line for nothing: chunked twice, or not
		// last (RFC 9112 §6.1, §6.3), where another hop may frame the
		// message otherwise (TE.TE desync).
		{"identity coding", post + "Transfer-Encoding: identity\r\n\r\n" + get("after-identity")},
		{"identity coding with a length", post + "Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc"},
		{"chunked in two lines", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
		{"chunked then identity", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
		{"identity then chunked", post + "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
		{"duplicate content length", post + "Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"},
		{"negative content length", post + "Content-Length: -3\r\n\r\nabc"},
	} {
		t.Run(tc.name, func(t *testing.T) { bad(t, tc.raw, 400, "malformed-request") })
	}
	t.Run("repeated field lines keep their order", func(t *testing.T) {
		// RFC 9110 §5.3: the order of a field's lines is significant.
		// Deleting a field ahead of them (fasthttp's Del moves the last
		// field into its place) swapped them, upstream and to the client.
		a := exchange(t, g.Addr, "GET /api/v1/products/header?name=Via HTTP/1.1\r\nHost: gw\r\nX-Request-ID: client-1\r\n"+
			"Keep-Alive: 300\r\nVia: 1.0 a\r\nVia: 1.1 b\r\n\r\n", 1)[0]
		if a.Status != 200 || a.Body != "Via=1.0 a,1.1 b" {
			t.Fatalf("the upstream got %d %q, want Via=1.0 a,1.1 b", a.Status, a.Body)
		}
		a = exchange(t, g.Addr, get("via-order"), 1)[0]
		if got := strings.Join(a.Header.Values("Via"), ","); a.Status != 200 || got != "1.0 a,1.1 b" {
			t.Fatalf("the client got %d, Via %q, want 1.0 a,1.1 b", a.Status, got)
		}
	})
	t.Run("HTTP versions other than 1.0 and 1.1", func(t *testing.T) {
		// RFC 9110 §15.6.6: 505, never proxied (it went upstream as
		// HTTP/1.1), and closed, as what follows may be another protocol.
		before := up.hits.Load()
		for _, raw := range []string{
			"GET /api/v1/products/v HTTP/2.0\r\nHost: gw\r\n\r\n",
			"GET /api/v1/products/v HTTP/3.0\r\nHost: gw\r\n\r\n",
			"GET /api/v1/products/v HTTP/0.9\r\nHost: gw\r\n\r\n",
			"GET /api/v1/products/v HTTP/1.2\r\nHost: gw\r\n\r\n",
			"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			// With a body that has not (all) come: answered at once, not
			// with the 408 of waiting for it.
			"POST /api/v1/orders/v HTTP/2.0\r\nHost: gw\r\nContent-Length: 100\r\n\r\nabc",
			"POST /api/v1/orders/v HTTP/0.9\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
		} {
			bad(t, raw, 505, "version-not-supported")
		}
		if n := up.hits.Load() - before; n != 0 {
			t.Fatalf("%d requests of another HTTP version reached the upstream", n)
		}
	})
	t.Run("chunked body cut off by the read timeout", func(t *testing.T) {
		// Wherever the body stops, it is the read timeout's 408. fasthttp
		// wraps a timeout inside a chunk-size line (after its digits, in
		// an extension, before its LF) in ErrBrokenChunk, which hides the
		// cause: it was 400 malformed-request there, 408 on the loop.
		chunked := post + "Transfer-Encoding: chunked\r\n\r\n"
		for _, body := range []string{"", "5", "5;", "5;ext=1", "5\r", "5\r\nab", "5\r\nhello", "5\r\nhello\r", "5\r\nhello\r\n0", "5\r\nhello\r\n0\r\n", "5\r\nhello\r\n0\r\n\r"} {
			t.Run(fmt.Sprintf("%q", body), func(t *testing.T) {
				t.Parallel() // each waits out the read timeout
				bad(t, chunked+body, 408, "request-timeout")
			})
		}
	})
	t.Run("headers over 16 KiB", func(t *testing.T) {
		bad(t, "GET /api/v1/products/a HTTP/1.1\r\nHost: gw\r\nX-Big: "+strings.Repeat("a", 17<<10)+"\r\n\r\n", 431, "headers-too-large")
	})
	t.Run("body over the limit, chunked", func(t *testing.T) {
		bad(t, post+"Transfer-Encoding: chunked\r\n\r\n800\r\n"+strings.Repeat("x", 0x800)+"\r\n0\r\n\r\n", 413, "body-too-large")
	})

	t.Run("pipelined, in one write and split at odd bytes", func(t *testing.T) {
		raw := get("p1") + get("p2") + "POST /api/v1/products/p3 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello" + get("p4")
		for _, split := range [][]int{nil, {1}, {7, 50, 51, 52}, {len(get("p1")) - 1, len(raw) - 3}} {
			as := exchange(t, g.Addr, raw, 4, split...)
			ok(t, as[0], "p1")
			ok(t, as[1], "p2")
			if as[2].Status != 401 || as[2].problem() != "unauthenticated" { // POST is not public: answered here, in order
				t.Fatalf("split %v: third answer %d %q", split, as[2].Status, as[2].Body)
			}
			ok(t, as[3], "p4")
		}
	})

	t.Run("HTTP/1.0 closes unless keep-alive, and needs no Host", func(t *testing.T) {
		c := dialRaw(t, g.Addr)
		defer c.Close()
		writeSplit(t, c, "GET /api/v1/products/h10 HTTP/1.0\r\n\r\n")
		br := bufio.NewReader(c)
		a, err := readAnswer(br)
		if err != nil {
			t.Fatal(err)
		}
		ok(t, a, "h10")
		if !closedAfter(c, br) {
			t.Fatal("HTTP/1.0 connection without keep-alive left open")
		}
		as := exchange(t, g.Addr, "GET /api/v1/products/k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /api/v1/products/k2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 2)
		ok(t, as[0], "k1")
		ok(t, as[1], "k2")
		// The gateway speaks HTTP/1.1 upstream whatever the client speaks:
		// an HTTP/1.0 request would make the upstream close each pooled
		// connection after one answer.
		before := up.conn.Load()
		for i := range 5 {
			ok(t, exchange(t, g.Addr, fmt.Sprintf("GET /api/v1/products/n%d HTTP/1.0\r\n\r\n", i), 1)[0], fmt.Sprintf("n%d", i))
		}
		if n := up.conn.Load() - before; n > 1 {
			t.Fatalf("5 HTTP/1.0 requests opened %d upstream connections", n)
		}
		if !strings.EqualFold(as[0].Header.Get("Connection"), "keep-alive") {
			t.Fatalf("HTTP/1.0 keep-alive answer says Connection %q", as[0].Header.Get("Connection"))
		}
		// As HTTP/1.1 it needs a Host (a net/http upstream answers 400
		// without): the endpoint's address.
		if a := exchange(t, g.Addr, "GET /api/v1/products/echo HTTP/1.0\r\n\r\n", 1)[0]; a.Status != 200 || !strings.HasPrefix(a.Body, "host="+up.addr()+" ") {
			t.Fatalf("HTTP/1.0 without Host: %d %q, want host=%s", a.Status, a.Body, up.addr())
		}
	})

	t.Run("Expect: 100-continue", func(t *testing.T) {
		// The expectation's value is case-insensitive (RFC 9110 §10.1.1).
		// The gateway answers it and forwards the whole body at once, so
		// the upstream (answering with the Expect it got) gets none: an
		// upstream that honours it would answer a 100 first. The 100
		// follows the first Expect field; beside another one, both go on
		// (the upstream would refuse the other with a 417).
		const e1 = "POST /api/v1/orders/header?name=Expect HTTP/1.1\r\nHost: gw\r\n"
		for _, tc := range []struct{ expect, want string }{
			{"Expect: 100-continue\r\n", "Expect="},
			{"Expect: 100-Continue\r\n", "Expect="},
			{"Expect: 100-continue\r\nExpect: something-else\r\n", "Expect=100-continue,something-else"},
		} {
			c := dialRaw(t, g.Addr)
			defer c.Close()
			writeSplit(t, c, e1+"Authorization: Bearer "+tok+"\r\n"+tc.expect+"Content-Length: 5\r\n\r\n")
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
				t.Fatalf("%q: interim answer %q %v", tc.expect, line, err)
			}
			if l, _ := br.ReadString('\n'); l != "\r\n" {
				t.Fatalf("%q: 100 Continue has headers: %q", tc.expect, l)
			}
			writeSplit(t, c, "hello")
			a, err := readAnswer(br)
			if err != nil || a.Status != 200 || a.Body != tc.want {
				t.Fatalf("%q: after 100 Continue: %+v %v, want %s", tc.expect, a, err, tc.want)
			}
		}
		// A body announced over the limit gets its 413 at once, no 100:
		// the fasthttp transport sent one first, and the client the whole
		// body, read and dropped while the connection lingered.
		bad(t, post+"Expect: 100-continue\r\nContent-Length: 2000\r\n\r\n", 413, "body-too-large")
		// An HTTP/1.0 client cannot read a 100 (Continue): the expectation
		// is ignored (§10.1.1), the first answer it reads is the final one.
		// The upstream, spoken to in HTTP/1.1, does not get it either.
		c := dialRaw(t, g.Addr)
		defer c.Close()
		writeSplit(t, c, "POST /api/v1/orders/header?name=Expect HTTP/1.0\r\nAuthorization: Bearer "+tok+"\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
		if a, err := readAnswer(bufio.NewReader(c)); err != nil || a.Status != 200 || a.Body != "Expect=" {
			t.Fatalf("HTTP/1.0 with Expect: %+v %v", a, err)
		}
		// Another expectation is the upstream's to meet or refuse (417),
		// and a 100-continue beside it goes on too, in the order sent. No
		// 100 is owed when the first field is another (HTTP/1.1) or from
		// an HTTP/1.0 client, whose 100-continue the fasthttp transport
		// forwards as 100-Continue (HeaderReceived), the same expectation.
		const e0 = "POST /api/v1/orders/header?name=Expect HTTP/1.0\r\n"
		want10 := "Expect=100-continue,something-else"
		if transport() == "fasthttp" {
			want10 = "Expect=100-Continue,something-else"
		}
		for _, tc := range []struct{ head, want string }{
			{e1 + "Expect: something-else\r\n", "Expect=something-else"},
			{e1 + "Expect: something-else\r\nExpect: 100-continue\r\n", "Expect=something-else,100-continue"},
			{e0 + "Expect: 100-continue\r\nExpect: something-else\r\n", want10},
		} {
			if a := exchange(t, g.Addr, tc.head+"Authorization: Bearer "+tok+"\r\nContent-Length: 5\r\n\r\nhello", 1)[0]; a.Status != 200 || a.Body != tc.want {
				t.Fatalf("%q: %+v, want %s", tc.head, a, tc.want)
			}
		}
	})

	// A trailer with fields is refused (TestRefusedRequestClosesItsConnection).
	// The connection closes after a chunked request (TestChunkedTrailerBareLF).
	t.Run("chunked body with extensions", func(t *testing.T) {
		c := dialRaw(t, g.Addr)
		defer c.Close()
		writeSplit(t, c, post+"Transfer-Encoding: chunked\r\n\r\n3;name=val\r\nabc\r\n2\r\nde\r\n0;end=1\r\n\r\n"+get("c2"))
		br := bufio.NewReader(c)
		a, err := readAnswer(br)
		if err != nil || a.Status != 200 || a.Body != `host=gw cl=5 te=[] body=abcde` {
			t.Fatalf("chunked: %+v %v", a, err)
		}
		if !closedAfter(c, br) {
			t.Fatal("chunked: the connection stayed open, and answered more")
		}
	})

	t.Run("Content-Length and Transfer-Encoding", func(t *testing.T) {
		// RFC 9112 §6.3: the coding wins, and an intermediary forwards the
		// decoded body with its own length, never the client's.
		// And it must close the connection after answering (§6.3; §6.1 for
		// HTTP/1.0 with a coding): another hop may have framed it by the
		// length, and what follows is not a request to answer.
		for _, raw := range []string{
			post + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
			strings.Replace(post, "HTTP/1.1", "HTTP/1.0", 1) + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
		} {
			c := dialRaw(t, g.Addr)
			defer c.Close()
			writeSplit(t, c, raw+get("smuggled"))
			br := bufio.NewReader(c)
			a, err := readAnswer(br)
			if err != nil || a.Status != 200 || a.Body != `host=gw cl=5 te=[] body=abcde` {
				t.Fatalf("%q: %+v %v", trim(raw), a, err)
			}
			if !closedAfter(c, br) {
				t.Fatalf("%q: connection left open", trim(raw))
			}
		}
	})

	t.Run("bare LF line endings", func(t *testing.T) {
		// RFC 9112 §2.2: a recipient may take a bare LF for CRLF, which
		// fasthttp's parser does everywhere but at the blank line ending
		// the head: it finds that only at a CRLFCRLF.
		lf := "POST /api/v1/orders/echo HTTP/1.1\nHost: gw\nAuthorization: Bearer " + tok + "\nContent-Length: 5\n\nhello"
		// Followed by a CRLF request, both transports parse it.
		as := exchange(t, g.Addr, lf+get("crlf"), 2)
		if as[0].Status != 200 || as[0].Body != "host=gw cl=5 te=[] body=hello" {
			t.Fatalf("bare LF, then CRLF: %d %q", as[0].Status, as[0].Body)
		}
		ok(t, as[1], "crlf")
		alone := []string{"GET /api/v1/products/lf1 HTTP/1.1\nHost: gw\n\n", "GET /api/v1/products/lf2 HTTP/1.1\r\nHost: gw\n\r\n"}
		if transport() == "fasthttp" {
			// Alone, the fasthttp server waits for a CRLFCRLF until the
			// read timeout, and gives no hook before that (README).
			if a := exchange(t, g.Addr, alone[0], 1)[0]; a.Status != 408 {
				t.Fatalf("fasthttp, bare LF alone: %d %q (accepted now? update the README)", a.Status, a.Body)
			}
			return
		}
		// The event loop accepts it alone too, also when the head arrives
		// in pieces and the body after it.
		for _, raw := range alone {
			ok(t, exchange(t, g.Addr, raw, 1)[0], raw[len("GET /api/v1/products/"):len("GET /api/v1/products/lf1")])
		}
		as = exchange(t, g.Addr, lf+lf, 2, 3, len(lf)-7, len(lf)-2, len(lf)+40)
		for _, a := range as {
			if a.Status != 200 || a.Body != "host=gw cl=5 te=[] body=hello" {
				t.Fatalf("bare LF in pieces: %d %q", a.Status, a.Body)
			}
		}
	})

	t.Run("obs-fold", func(t *testing.T) {
		// RFC 9112 §5.2: a folded field line is either refused or
		// unfolded with spaces before it goes on. Unfolded, the second
		// request was one field X and no body here, then the smuggled GET
		// read as the next request and proxied, while a hop in front
		// that takes the folded line for a field of its own framed a
		// 48-byte body. Refused on both transports, and closed.
		before := up.hits.Load()
		for _, raw := range []string{
			"GET /api/v1/products/header?name=X-Folded HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n b\r\n\tc\r\n\r\n",
			"POST /api/v1/orders/folded HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + tok + "\r\nX: y\r\n Content-Length: 48\r\n\r\n" +
				"GET /api/v1/products/smug HTTP/1.1\r\nHost: gw\r\n\r\n",
			"GET /healthz HTTP/1.1\r\nHost: gw\r\nX: y\r\n\t1\r\n\r\n",
		} {
			bad(t, raw, 400, "malformed-request")
		}
		if n := up.hits.Load() - before; n != 0 {
			t.Fatalf("upstream saw %d of them", n)
		}
	})

	t.Run("header name ending in whitespace", func(t *testing.T) {
		// RFC 9112 §5.1: refused, never forwarded for a lenient upstream to
		// read as X-User-ID or as the framing.
		before := up.hits.Load()
		for _, field := range []string{"X-User-ID : admin\r\nContent-Length: 0", "Transfer-Encoding : chunked\r\nContent-Length: 5"} {
			a := exchange(t, g.Addr, post+field+"\r\n\r\nhello", 1)[0]
			if a.Status != 400 || a.problem() != "malformed-request" {
				t.Fatalf("%q: %d %q", field, a.Status, a.Body)
			}
		}
		if n := up.hits.Load() - before; n != 0 {
			t.Fatalf("upstream saw %d of them", n)
		}
	})

	t.Run("request targets", func(t *testing.T) {
		before := up.hits.Load()
		// The upstream gets the canonical path, also where the transport
		// had parsed the client's target before the chain cleaned it.
		ok(t, exchange(t, g.Addr, "GET /api/v1/products/x/../canon HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0], "canon")
		// RFC 9112 §3.2.2: the absolute form is routed on its path, and its
		// authority is the Host the upstream gets, whatever Host said.
		ok(t, exchange(t, g.Addr, "GET http://gw/api/v1/products/abs HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0], "abs")
		ok(t, exchange(t, g.Addr, "GET HTTPS://gw/api/v1/products/./abs2?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0], "abs2")
		if a := exchange(t, g.Addr, "GET http://gw/healthz HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]; a.Status != 200 || a.Body != "ok" {
			t.Fatalf("health check in absolute form: %d %q", a.Status, a.Body)
		}
		// Admin paths match as sent, on both transports: other spellings
		// are the chain's (fasthttp answered them from its normalised path).
		for _, target := range []string{"//healthz", "/%68ealthz", "/api/../healthz", "/healthz/."} {
			if a := exchange(t, g.Addr, "GET "+target+" HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]; a.Status != 404 || a.problem() != "no-route" {
				t.Fatalf("GET %s: %d %q, want 404 no-route", target, a.Status, a.Body)
			}
		}
		for _, tc := range []struct{ raw, host string }{
			{"POST http://other.example:81/api/v1/orders/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + tok + "\r\nContent-Length: 2\r\n\r\nab", "other.example:81"},
			{"GET http://h10.example/api/v1/products/echo HTTP/1.0\r\n\r\n", "h10.example"},
			// The Host as sent, not lower-cased (virtual hosts, signatures).
			{"GET /api/v1/products/echo HTTP/1.1\r\nHost: Gw.Example:8080\r\n\r\n", "Gw.Example:8080"},
		} {
			a := exchange(t, g.Addr, tc.raw, 1)[0]
			if a.Status != 200 || !strings.HasPrefix(a.Body, "host="+tc.host+" ") {
				t.Fatalf("%q: %d %q, want host %s", trim(tc.raw), a.Status, a.Body, tc.host)
			}
		}
		// OPTIONS * is about the gateway: answered here, never forwarded.
		for _, target := range []string{"*", "http://gw"} {
			a := exchange(t, g.Addr, "OPTIONS "+target+" HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]
			if a.Status != 204 || !strings.Contains(a.Header.Get("Allow"), "GET") || a.Header.Get("X-Request-Id") == "" {
				t.Fatalf("OPTIONS %s: %d Allow %q", target, a.Status, a.Header.Get("Allow"))
			}
		}
		if n := up.hits.Load() - before; n != 6 {
			t.Fatalf("upstream saw %d requests, want the 6 routed ones", n)
		}
		// Other forms, and absolute URIs that cannot name a Host.
		// A fragment is no part of a target (RFC 9112 §3.2), after a query too.
		for _, line := range []string{"GET *", "GET gw:443", "GET ftp://gw/api/v1/products/a",
			"GET http://user@gw/api/v1/products/a", "GET http:///api/v1/products/a", "GET /api/v1/products/a#f",
			"GET /api/v1/products/a?q=1#f", "GET http://gw/api/v1/products/a?q#f",
			// Controls and a scheme of bytes no scheme has: the fasthttp
			// server refuses such a target before the chain sees it, and
			// answered malformed-request where the event loop's chain said
			// bad-path.
			"GET /api/v1/products/a\tb", "GET /api/v1/products/\x01", "GET /api/v1/products/a?q=\tx",
			"GET http://gw/api/v1/products/\x7f", "GET h_p://gw/api/v1/products/a"} {
			a := exchange(t, g.Addr, line+" HTTP/1.1\r\nHost: gw\r\n\r\n", 1)[0]
			if a.Status != 400 || a.problem() != "bad-path" {
				t.Fatalf("%q: %d %q", line, a.Status, a.Body)
			}
		}
		if n := up.hits.Load() - before; n != 6 {
			t.Fatalf("upstream saw %d requests, want 6", n)
		}
	})

	t.Run("CONNECT, TRACE and Max-Forwards", func(t *testing.T) {
		before := up.hits.Load()
		// The gateway does not tunnel: 501 (RFC 9110 §9.1), in any target
		// form, never forwarded.
		// The connection closes after it: the client may have sent the
		// tunnel's first bytes already.
		for _, target := range []string{"gw:443", "/api/v1/products/tunnel"} {
			c := dialRaw(t, g.Addr)
			defer c.Close()
			writeSplit(t, c, "CONNECT "+target+" HTTP/1.1\r\nHost: gw\r\n\r\n\x16\x03\x01\x00\x05hello")
			br := bufio.NewReader(c)
			a, err := readAnswer(br)
			if err != nil || a.Status != 501 || a.problem() != "not-implemented" {
				t.Fatalf("CONNECT %s: %+v %v", target, a, err)
			}
			if !closedAfter(c, br) {
				t.Fatalf("CONNECT %s: connection left open", target)
			}
		}
		// RFC 9110 §7.6.2: Max-Forwards 0 stops OPTIONS and TRACE here;
		// above 0 the upstream gets one less.
		auth := "Host: gw\r\nAuthorization: Bearer " + tok + "\r\n"
		a := exchange(t, g.Addr, "OPTIONS /api/v1/orders/header?name=Max-Forwards HTTP/1.1\r\n"+auth+"Max-Forwards: 0\r\n\r\n", 1)[0]
		if a.Status != 204 || !strings.Contains(a.Header.Get("Allow"), "GET") {
			t.Fatalf("OPTIONS, Max-Forwards 0: %d Allow %q", a.Status, a.Header.Get("Allow"))
		}
		a = exchange(t, g.Addr, "TRACE /api/v1/orders/header?name=Max-Forwards HTTP/1.1\r\n"+auth+"Max-Forwards: 0\r\n\r\n", 1)[0]
		if a.Status != 501 || a.problem() != "not-implemented" {
			t.Fatalf("TRACE, Max-Forwards 0: %d %q", a.Status, a.Body)
		}
		if n := up.hits.Load() - before; n != 0 {
			t.Fatalf("upstream saw %d of them", n)
		}
		for _, m := range []string{"OPTIONS", "TRACE"} {
			a := exchange(t, g.Addr, m+" /api/v1/orders/header?name=Max-Forwards HTTP/1.1\r\n"+auth+"Max-Forwards: 2\r\n\r\n", 1)[0]
			if a.Status != 200 || a.Body != "Max-Forwards=1" {
				t.Fatalf("%s, Max-Forwards 2: %d %q", m, a.Status, a.Body)
			}
		}
	})

	t.Run("Host missing, doubled or invalid", func(t *testing.T) {
		before := up.hits.Load()
		a := exchange(t, g.Addr, "GET /api/v1/products/nohost HTTP/1.1\r\n\r\n", 1)[0]
		if a.Status != 400 || a.problem() != "malformed-request" {
			t.Fatalf("HTTP/1.1 without Host: %d %q", a.Status, a.Body)
		}
		// RFC 9112 §3.2: more than one Host field is 400, in any spelling
		// and with any target (the parser keeps only the last).
		for _, raw := range []string{
			strings.Replace(post, "Host: gw", "Host: a\r\nHost: gw", 1) + "Content-Length: 0\r\n\r\n",
			"GET /api/v1/products/h2 HTTP/1.1\r\nhost: a\r\nX-A: b\r\nHOST: gw\r\n\r\n",
			"GET http://gw/api/v1/products/h3 HTTP/1.1\r\nHost: gw\r\nHost: gw\r\n\r\n",
			"GET /api/v1/products/h4 HTTP/1.0\r\nHost: a\r\nHost: gw\r\n\r\n",
			// And a Host that is no host[:port] (the fasthttp server refused
			// some of these, the event loop forwarded them all).
			"GET /api/v1/products/h5 HTTP/1.1\r\nHost: a b\r\n\r\n",
			"GET /api/v1/products/h6 HTTP/1.1\r\nHost: user@gw\r\n\r\n",
			"GET /api/v1/products/h7 HTTP/1.1\r\nHost: gw/x\r\n\r\n",
			"GET /api/v1/products/h8 HTTP/1.1\r\nHost: gw:8o\r\n\r\n",
			"GET /api/v1/products/h9 HTTP/1.1\r\nHost: [::1\r\n\r\n",
			"GET http://gw:x/api/v1/products/h10 HTTP/1.1\r\nHost: gw\r\n\r\n",
		} {
			a := exchange(t, g.Addr, raw, 1)[0]
			if a.Status != 400 || a.problem() != "malformed-request" {
				t.Fatalf("%q: %d %q", trim(raw), a.Status, a.Body)
			}
		}
		if n := up.hits.Load() - before; n != 0 {
			t.Fatalf("upstream saw %d of them", n)
		}
	})

	t.Run("client gone mid-request and mid-response", func(t *testing.T) {
		before := up.hits.Load()
		c := dialRaw(t, g.Addr)
		writeSplit(t, c, post+"Content-Length: 100\r\n\r\nabc")
		c.Close()
		c = dialRaw(t, g.Addr)
		writeSplit(t, c, get("slow"))
		c.Close()
		time.Sleep(1800 * time.Millisecond) // the slow answer has come back
		ok(t, exchange(t, g.Addr, get("after"), 1)[0], "after")
		if n := up.hits.Load() - before; n != 2 {
			t.Fatalf("upstream saw %d requests, want the slow one and the last", n)
		}
	})
	leaks()
}

func TestMisbehavingUpstreams(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	g := rawGateway(w, up)
	leaks := noLeaks(t, w, g, up)
	for _, tc := range []struct {
		path   string
		status int
		slug   string
		body   string
		// drop: the gateway must not reuse the connection (for *-late,
		// the event loop drops it when the bytes come, the fasthttp
		// transport when it would next send on it). After twice both drop
		// it when the unasked answer came in the same read as the asked
		// one (bytes left over), and otherwise as for *-late: not checked,
		// as the fasthttp transport may not send on it again here.
		drop bool
	}{
		{"close", 502, "upstream-unreachable", "", false},
		{"garbage", 502, "upstream-unreachable", "", false},
		{"eof-body", 200, "", "eof-delimited", false},
		{"chunked", 200, "", "abcdefg", false},
		{"continue", 200, "", "ok:/api/v1/products/continue", false},
		{"hints", 502, "upstream-unreachable", "", false},
		{"hints-late", 502, "upstream-unreachable", "", true},
		{"status999", 502, "upstream-unreachable", "", false},
		{"bighead", 502, "upstream-unreachable", "", true},
		// The same head limit as a request's (16 KiB), on both transports:
		// the fasthttp transport's pools read answers into 8 KiB and
		// answered such an answer 502 where the event loop passed it on.
		{"head12k", 200, "", "ok", false},
		{"huge", 502, "upstream-unreachable", "", false},
		{"slow", 504, "timeout", "", true},
		{"twice", 200, "", "ok:/api/v1/products/twice", false},
		{"twice-late", 200, "", "ok:/api/v1/products/twice-late", true},
		// A malformed answer fails at once (502, not the 504 of waiting
		// for more), and its connection is not used again.
		{"cl-twice", 502, "upstream-unreachable", "", true},
		{"cl-twice-short", 502, "upstream-unreachable", "", true},
		{"cl-spaced", 502, "upstream-unreachable", "", true},
		{"field-spaced", 502, "upstream-unreachable", "", true},
		{"name-spaced", 502, "upstream-unreachable", "", true},
		{"name-tabbed", 502, "upstream-unreachable", "", true},
		{"continue-cl-twice", 502, "upstream-unreachable", "", true},
		{"cl-same", 200, "", "ok", false},
		// Both framings: the coding's body with the gateway's length, as
		// for a client's request, and the connection not used again.
		{"te-cl", 200, "", "ok", true},
		{"bare-lf", 502, "upstream-unreachable", "", true},
		{"bare-lf-field", 502, "upstream-unreachable", "", true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			a := exchange(t, g.Addr, get(tc.path), 1)[0]
			if a.Status != tc.status || a.problem() != tc.slug || (tc.body != "" && a.Body != tc.body) {
				t.Fatalf("%d %q (problem %q), want %d %q %q", a.Status, trim(a.Body), a.problem(), tc.status, tc.slug, tc.body)
			}
			time.Sleep(300 * time.Millisecond) // whatever the upstream sends late is in
			// The gateway still serves, and nobody gets an answer not its
			// own: several clients at once, so that pooled connections are
			// used. A connection found holding unasked bytes (*-late) is
			// dropped, and the one request that met it fails unsent (502).
			var failed atomic.Int64
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					p := fmt.Sprintf("next%d", i)
					as := exchange(t, g.Addr, get(p)+get(p+"b"), 2)
					for j, s := range []string{p, p + "b"} {
						switch {
						case as[j].Status == 502 && as[j].problem() == "upstream-unreachable":
							failed.Add(1)
						case as[j].Status != 200 || as[j].Body != "ok:/api/v1/products/"+s:
							t.Errorf("after %s: %d %q, want ok:/api/v1/products/%s", tc.path, as[j].Status, as[j].Body, s)
						}
					}
				})
			}
			wg.Wait()
			if n := failed.Load(); n > 1 || (n == 1 && !strings.HasSuffix(tc.path, "-late")) {
				t.Fatalf("after %s: %d requests failed", tc.path, n)
			}
			if tc.drop {
				eventually(t, 3*time.Second, "the gateway dropped the connection", func() bool { return up.wasDropped(tc.path) })
			}
		})
	}
	t.Run("no content with a length", func(t *testing.T) {
		// RFC 9110 §8.6: no Content-Length in a 204, whatever the upstream
		// sent; no body in a 204 or 304 (§6.4.1), and bytes sent as one
		// are no answer, so their connection is dropped.
		for _, tc := range []struct {
			path   string
			status int
			drop   bool
		}{{"nocontent-cl", 204, false}, {"nocontent-body", 204, true}, {"notmodified-body", 304, true}} {
			c := dialRaw(t, g.Addr)
			writeSplit(t, c, get(tc.path)+get("after-"+tc.path))
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, fmt.Sprintf("HTTP/1.1 %d ", tc.status)) {
				t.Fatalf("%s: status line %q %v", tc.path, line, err)
			}
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("%s: %v", tc.path, err)
				}
				if l == "\r\n" {
					break
				}
				if tc.status == 204 && strings.HasPrefix(strings.ToLower(l), "content-length:") {
					t.Fatalf("%s: 204 with %q", tc.path, l)
				}
			}
			// What follows the head is the next answer, not a body.
			if a, err := readAnswer(br); err != nil || a.Status != 200 || a.Body != "ok:/api/v1/products/after-"+tc.path {
				t.Fatalf("%s: next answer %+v %v", tc.path, a, err)
			}
			c.Close()
			if tc.drop {
				eventually(t, 3*time.Second, "the gateway dropped the connection", func() bool { return up.wasDropped(tc.path) })
			}
		}
	})
	t.Run("every Set-Cookie line", func(t *testing.T) {
		// A cookie is known by its name, path and domain (RFC 6265 §5.3):
		// two lines for "sid" on two paths are two cookies, and the client
		// gets both, in the order sent.
		a := exchange(t, g.Addr, get("cookies"), 1)[0]
		want := []string{"sid=a; Path=/", "sid=b; Path=/api", "theme=dark"}
		if got := a.Header.Values("Set-Cookie"); a.Status != 200 || !slices.Equal(got, want) {
			t.Fatalf("%d, Set-Cookie %q, want %q", a.Status, got, want)
		}
	})
	t.Run("trailer fields stay out of the head", func(t *testing.T) {
		// RFC 9110 §6.5.2: a trailer field is no header field. fasthttp's
		// parser appends an answer's trailer fields to its header, which
		// goes out before the body: there a trailer could pose as a field
		// the upstream never sent in its head (CORS, HSTS, a second value
		// of a head's field). The gateway drops an answer's trailer
		// section (it sends the body with its own length), and the
		// Trailer field announcing one.
		c := dialRaw(t, g.Addr)
		defer c.Close()
		writeSplit(t, c, get("trailers")+get("after-trailers"))
		br := bufio.NewReader(c)
		a, err := readAnswer(br)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != 200 || a.Body != "ok" {
			t.Fatalf("%d %q, want 200 ok", a.Status, trim(a.Body))
		}
		for _, name := range []string{"X-Checksum", "Access-Control-Allow-Origin", "Strict-Transport-Security", "Trailer"} {
			if v, ok := a.Header[name]; ok {
				t.Errorf("header %s: %q, which the upstream sent in no head", name, v)
			}
		}
		if got := a.Header.Values("X-Same"); !slices.Equal(got, []string{"head"}) {
			t.Errorf("X-Same %q, want only the head's [head]", got)
		}
		if len(a.Trailer) > 0 {
			t.Errorf("trailer %q, want none (dropped, as the README says)", a.Trailer)
		}
		// The connection, and the framing, are intact.
		if a, err := readAnswer(br); err != nil || a.Status != 200 || a.Body != "ok:/api/v1/products/after-trailers" {
			t.Fatalf("next answer %+v %v", a, err)
		}
		// Trailer fields the parser refuses outright (Set-Cookie,
		// Location, framing fields) are dropped with the rest: the body
		// came whole, and RFC 9110 §6.5.1 lets a recipient drop them. The
		// answer failed as a whole (502).
		c2 := dialRaw(t, g.Addr)
		defer c2.Close()
		writeSplit(t, c2, get("trailer-forbidden")+get("after-trailers"))
		br2 := bufio.NewReader(c2)
		a, err = readAnswer(br2)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != 200 || a.Body != "ok" || a.Header.Get("Set-Cookie") != "" || a.Header.Get("Location") != "" || len(a.Trailer) > 0 {
			t.Fatalf("forbidden trailer fields: %d %q, Set-Cookie %q, Location %q, trailer %q; want 200 ok and none of them",
				a.Status, trim(a.Body), a.Header.Get("Set-Cookie"), a.Header.Get("Location"), a.Trailer)
		}
		if a, err := readAnswer(br2); err != nil || a.Status != 200 || a.Body != "ok:/api/v1/products/after-trailers" {
			t.Fatalf("next answer after forbidden trailer fields %+v %v", a, err)
		}
		// A malformed trailer section still fails the answer.
		if a := exchange(t, g.Addr, get("trailer-malformed"), 1)[0]; a.Status != 502 || a.problem() != "upstream-unreachable" {
			t.Fatalf("malformed trailer: %d %q, want 502 upstream-unreachable", a.Status, a.problem())
		}
	})
	t.Run("empty fields and an empty query reach the upstream", func(t *testing.T) {
		// RFC 9110 §5.5: a field value may be empty, and an empty field is
		// not an absent one; RFC 3986 §6.2.3: "/a?" is not "/a". fasthttp
		// wrote neither an empty User-Agent nor an empty Cookie, and its
		// client wrote the parsed target, without the '?'.
		for _, tc := range []struct{ target, fields, want string }{
			{"target?", "User-Agent:\r\nCookie:\r\n", `uri=/api/v1/products/target? ua=[""] cookie=[""]`},
			{"%74arget?", "User-Agent: ua\r\nCookie: a=1\r\n", `uri=/api/v1/products/target? ua=["ua"] cookie=["a=1"]`},
			{"target?x=1", "", `uri=/api/v1/products/target?x=1 ua=[] cookie=[]`},
		} {
			raw := "GET /api/v1/products/" + tc.target + " HTTP/1.1\r\nHost: gw\r\n" + tc.fields + "\r\n"
			if a := exchange(t, g.Addr, raw, 1)[0]; a.Status != 200 || a.Body != tc.want {
				t.Errorf("%q with %q: %d %q, want %q", tc.target, tc.fields, a.Status, trim(a.Body), tc.want)
			}
		}
	})
	t.Run("answer without Content-Type", func(t *testing.T) {
		// echo's answer has none; the gateway must not make one up.
		a := exchange(t, g.Addr, get("echo"), 1)[0]
		if ct, ok := a.Header["Content-Type"]; a.Status != 200 || ok {
			t.Fatalf("%d, Content-Type %q, want none", a.Status, ct)
		}
	})
	t.Run("early answer to a large body", func(t *testing.T) {
		body := strings.Repeat("e", 64<<10)
		a := exchange(t, g.Addr, "POST /api/v1/orders/early HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "+w.token("early-user")+
			fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n%s", len(body), body), 1)[0]
		if a.Status != 200 || a.Body != "ok:/api/v1/orders/early" {
			t.Fatalf("%d %q, want the upstream's early answer", a.Status, trim(a.Body))
		}
	})
	leaks()
}
