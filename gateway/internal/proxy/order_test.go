package proxy

import (
	"bufio"
	"iter"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// vias are the Via field's lines of h, in order.
func vias(h interface {
	All() iter.Seq2[[]byte, []byte]
}) []string {
	var out []string
	for k, v := range h.All() {
		if strings.EqualFold(string(k), "Via") {
			out = append(out, string(v))
		}
	}
	return out
}

var wantVias = []string{"1.0 a", "1.1 b"}

// A field the gateway deletes (hop-by-hop stripping, a client's X-User-ID
// or forwarding claims, a lone Expect, an upstream's X-Request-ID in
// another spelling) ahead of two lines of another field, the last of them
// last, swapped those two: fasthttp's Del moves the last field into the
// deleted one's place. RFC 9110 §5.3: the order of a field's lines is
// significant. On both transports they go on in the order they came,
// upstream and to the client.
func TestRepeatedLinesKeepTheirOrder(t *testing.T) {
	// The client's own request id: one the gateway made would be added
	// last, and be the field a deletion moved.
	const head = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\nX-Request-ID: client-1\r\n"
	const via = "Via: 1.0 a\r\nVia: 1.1 b\r\n"
	t.Run("request", func(t *testing.T) {
		up := startUpstream(t)
		p, _ := newTestProxy(t, Options{}, up)
		for _, c := range []struct{ name, fields string }{
			{"hop-by-hop", "Keep-Alive: 300\r\n"},
			{"named by Connection", "Connection: X-A\r\nX-A: 1\r\n"},
			{"X-User-ID", "X-User-ID: admin\r\n"},
			{"untrusted claim", "X-Real-IP: 6.6.6.6\r\n"},
			{"two X-Forwarded-For lines", "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n"},
			{"lone Expect", "Expect: 100-continue\r\n"},
		} {
			raw := head + c.fields + via + "\r\n"
			if ctx := serve(p, raw); ctx.Response.StatusCode() != 200 {
				t.Fatalf("%s: fasthttp: %d %s", c.name, ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if got := vias(up.last.Load()); !slices.Equal(got, wantVias) {
				t.Errorf("%s: fasthttp: the upstream gets Via %q, want %q", c.name, got, wantVias)
			}
			x, s := beginOnLoop(t, p, raw)
			if s != Send {
				t.Fatalf("%s: event loop: step %v, %d %s", c.name, s, x.Resp.StatusCode(), x.Resp.Body())
			}
			if got := vias(&x.Req.Header); !slices.Equal(got, wantVias) {
				t.Errorf("%s: event loop: the upstream gets Via %q, want %q", c.name, got, wantVias)
			}
		}
	})
	t.Run("answer", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			fields [][2]string
		}{
			{"hop-by-hop", [][2]string{{"Keep-Alive", "timeout=5"}}},
			{"named by Connection", [][2]string{{"Connection", "X-A"}, {"X-A", "1"}}},
			{"hop-by-hop in lower case", [][2]string{{"keep-alive", "timeout=5"}}},
			{"X-Request-ID in lower case", [][2]string{{"x-request-id", "upstream-id"}}},
		} {
			up := asSentUpstream(t, func(h *fasthttp.ResponseHeader) {
				for _, f := range c.fields {
					h.Add(f[0], f[1])
				}
				h.Add("Via", "1.0 a")
				h.Add("Via", "1.1 b")
			})
			p, _ := newTestProxy(t, Options{}, up)
			raw := head + "\r\n"
			ctx := serve(p, raw)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("%s: fasthttp: %d %s", c.name, ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if got := vias(&ctx.Response.Header); !slices.Equal(got, wantVias) {
				t.Errorf("%s: fasthttp: the client gets Via %q, want %q", c.name, got, wantVias)
			}
			// The event loop parses the same answer into the exchange's
			// response (names normalised, as its parser leaves them).
			x, s := beginOnLoop(t, p, raw)
			if s != Send {
				t.Fatalf("%s: event loop: step %v", c.name, s)
			}
			var answer strings.Builder
			answer.WriteString("HTTP/1.1 200 OK\r\nDate: Sat, 05 Dec 2026 14:00:00 GMT\r\nContent-Length: 2\r\n")
			for _, f := range c.fields {
				answer.WriteString(f[0] + ": " + f[1] + "\r\n")
			}
			answer.WriteString(via + "\r\nok")
			if err := x.Resp.Read(bufioReader(answer.String())); err != nil {
				t.Fatal(err)
			}
			if s := p.Received(x, nil); s != Done {
				t.Fatalf("%s: event loop: step %v after the answer", c.name, s)
			}
			p.Finish(x)
			if got := vias(&x.Resp.Header); !slices.Equal(got, wantVias) {
				t.Errorf("%s: event loop: the client gets Via %q, want %q", c.name, got, wantVias)
			}
		}
	})
}

// A browser's request and nginx's answer, each with a hop-by-hop field and
// no name twice: names that share a nameSet bit (Sec-Fetch-Site and
// Sec-Fetch-Mode; Date, Vary and Strict-Transport-Security) sent every such
// request down keepOrder's copying path, through an interface whose
// iterators moved its stack buffers to the heap: 7 allocations each.
const (
	browserRequest = "GET /api/v1/products/1 HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive\r\n" +
		"sec-ch-ua: \"Chromium\";v=\"130\"\r\nsec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Linux\"\r\n" +
		"Upgrade-Insecure-Requests: 1\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\nSec-Fetch-Site: none\r\n" +
		"Sec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\nAccept-Encoding: gzip\r\n" +
		"Accept-Language: en-US\r\nAuthorization: Bearer x\r\n\r\n"
	nginxAnswer = "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 05 Dec 2026 14:00:00 GMT\r\n" +
		"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n" +
		"Cache-Control: no-store\r\nETag: \"x\"\r\nVary: Accept-Encoding\r\nX-Content-Type-Options: nosniff\r\n" +
		"X-Frame-Options: DENY\r\nStrict-Transport-Security: max-age=1\r\nAccess-Control-Allow-Origin: *\r\n" +
		"Last-Modified: Sat, 05 Dec 2026 14:00:00 GMT\r\n\r\n"
)

func TestHopByHopStrippingAllocatesNothing(t *testing.T) {
	var req fasthttp.RequestHeader
	readReq := func() {
		req.Reset()
		if err := req.Read(bufio.NewReader(strings.NewReader(browserRequest))); err != nil {
			t.Fatal(err)
		}
	}
	readReq()
	Sanitize(&req) // the header's own buffers grow once
	if read, n := testing.AllocsPerRun(200, readReq), testing.AllocsPerRun(200, func() { readReq(); Sanitize(&req) }); n > read {
		t.Errorf("Sanitize makes %.1f allocations on a browser's request", n-read)
	}
	if req.Peek("Sec-Fetch-Site") == nil || req.Peek(fasthttp.HeaderConnection) != nil {
		t.Errorf("sanitized request:\n%s", req.Header())
	}

	var resp fasthttp.ResponseHeader
	readResp := func() {
		resp.Reset()
		if err := resp.Read(bufio.NewReader(strings.NewReader(nginxAnswer))); err != nil {
			t.Fatal(err)
		}
	}
	readResp()
	sanitizeResponse(&resp)
	if read, n := testing.AllocsPerRun(200, readResp), testing.AllocsPerRun(200, func() { readResp(); sanitizeResponse(&resp) }); n > read {
		t.Errorf("sanitizeResponse makes %.1f allocations on nginx's answer", n-read)
	}
	if resp.Peek("Vary") == nil || resp.Peek("Keep-Alive") != nil {
		t.Errorf("sanitized answer:\n%s", resp.Header())
	}
}
