package proxy

import (
	"bufio"
	"bytes"
	"iter"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// The header hygiene before its one-pass form: every hop-by-hop name
// deleted unconditionally. Kept as the reference the fuzz target below
// compares Sanitize and SanitizeResponse against.

// refHeader is a request or response header as the reference reads it.
type refHeader interface {
	hopHeader
	All() iter.Seq2[[]byte, []byte]
}

// refDropHop deletes what every Connection line names, each line read by
// its name in any case, not by Peek("Connection"): once fasthttp has set its
// close flag (an answer with a malformed field name, say) Peek returns
// "close" and the names the line sent go unread.
func refDropHop(h refHeader) {
	var names []byte
	for k, v := range h.All() {
		if strings.EqualFold(string(k), "Connection") {
			names = append(append(names, ','), v...)
		}
	}
	for len(names) > 0 {
		var tok []byte
		tok, names = nextToken(names)
		if len(tok) > 0 {
			h.DelBytes(tok)
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
	h.ResetConnectionClose()
}

func refSanitize(h *fasthttp.RequestHeader) {
	refDropHop(h)
	h.Del(UserHeader)
	var doomed [][]byte
	for k := range h.All() {
		if isUserHeader(k) || refFolded(k) {
			doomed = append(doomed, append([]byte(nil), k...))
		}
	}
	for _, k := range doomed {
		h.DelBytes(k)
	}
}

// refFolded is isFoldedSpelling written plainly.
func refFolded(k []byte) bool {
	return bytes.IndexByte(k, '_') >= 0 && slices.Contains(folded[:], strings.ToLower(strings.ReplaceAll(string(k), "_", "-")))
}

func refSetForwarded(t Trusted, h *fasthttp.RequestHeader, peer netip.Addr, tls bool) {
	peer = peer.Unmap()
	trusted := t.Contains(peer)
	var xff, xfp [][]byte
	for k, v := range h.All() {
		switch string(k) {
		case "X-Forwarded-For":
			xff = append(xff, append([]byte(nil), v...))
		case "X-Forwarded-Proto":
			xfp = append(xfp, append([]byte(nil), v...))
		}
	}
	var scratch []byte
	if chain := bytes.Join(xff, []byte(", ")); trusted && len(chain) > 0 {
		scratch = append(chain, ", "...)
	}
	scratch = peer.AppendTo(scratch)
	if len(xff) > 1 {
		h.Del("X-Forwarded-For")
	}
	h.SetBytesV("X-Forwarded-For", scratch)
	switch {
	case trusted && len(xfp) > 1:
		h.Del("X-Forwarded-Proto")
		h.SetBytesV("X-Forwarded-Proto", xfp[len(xfp)-1])
	case trusted && len(h.Peek("X-Forwarded-Proto")) > 0:
	default:
		if len(xfp) > 1 {
			h.Del("X-Forwarded-Proto")
		}
		if tls {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if !trusted {
		h.Del("Forwarded")
		h.Del("X-Real-IP")
		h.Del("X-Forwarded-Host")
	}
}

// FuzzSanitizeSameAsReference: for any header block, request or response,
// the one-pass hygiene leaves the fields the unconditional one leaves, and
// the lines of each field it does not set itself in the order they came
// (RFC 9110 §5.3), where the reference, over fasthttp's Del, may have
// swapped them.
func FuzzSanitizeSameAsReference(f *testing.F) {
	f.Add("X-User-ID: a\r\nConnection: X-A, close\r\nX-A: 1\r\n")
	f.Add("x_user_id: a\r\nX-USER-ID: b\r\nKeep-Alive: 1\r\nTE: trailers\r\n")
	f.Add("Connection: ,,,\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n")
	f.Add("Connection: keep-alive\r\nContent-Length: 3\r\n")
	f.Add("Transfer-Encoding: chunked\r\nTrailer: X-T\r\n")
	f.Add("Connection: Keep-Alive, upgrade, X-Secret, x-user-id\r\nX-Secret: 1\r\nkeep-alive: 1\r\n")
	f.Add("Connection: \u212aeep-alive\r\nKeep-Alive: 1\r\n")
	f.Add("X-Forwarded-For: 1.2.3.4\r\nx-real-ip: 6.6.6.6\r\nForwarded: for=x\r\nX-Forwarded-Host: h\r\nX-Forwarded-Proto: https\r\n")
	f.Add("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nx-forwarded-for: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n")
	// Deleted fields ahead of a field's lines, the last of them last.
	f.Add("Keep-Alive: 1\r\nVia: 1.0 a\r\nVia: 1.1 b\r\n")
	f.Add("X-User-ID: x\r\nWarning: 1\r\nConnection: X-A\r\nX-A: 1\r\nWarning: 2\r\nVia: a\r\nWarning: 3\r\nVia: b\r\n")
	f.Add("X-Real-IP: 6.6.6.6\r\nVia: a\r\nVia: b\r\n")
	f.Add("X_Forwarded_For: 6.6.6.6\r\nVia: a\r\nx-request_id: f\r\nVia: b\r\nX_Other: 1\r\n")
	f.Add("X-Forwarded-For: 1.2.3.4\r\nVia: a\r\nX-Forwarded-For: 10.0.0.2\r\nVia: b\r\n")
	f.Add("Date: a\r\nKeep-Alive: 1\r\nDate: b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n")
	// A malformed field name sets fasthttp's close flag on an answer, and
	// Peek("Connection") then says "close" instead of the names sent.
	f.Add("ConneCtion: X-A\r\nX-A:\r\nA B: x\r\n")
	trusted := Trusted{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, block string) {
		var a, b fasthttp.RequestHeader
		raw := "GET /x HTTP/1.1\r\nHost: h\r\n" + block + "\r\n"
		if a.Read(bufio.NewReader(strings.NewReader(raw))) == nil {
			_ = b.Read(bufio.NewReader(strings.NewReader(raw)))
			orig := linesByName(a.All())
			Sanitize(&a)
			refSanitize(&b)
			sameLines(t, "request "+strconv.Quote(block), linesByName(a.All()), linesByName(b.All()), orig)
			for _, peer := range []string{"10.0.0.1", "203.0.113.9"} {
				var c, d fasthttp.RequestHeader
				a.CopyTo(&c)
				a.CopyTo(&d)
				orig := linesByName(c.All())
				trusted.SetForwarded(&c, netip.MustParseAddr(peer), len(block)%2 == 0, sentOptional(&c), nil)
				refSetForwarded(trusted, &d, netip.MustParseAddr(peer), len(block)%2 == 0)
				sameLines(t, "forwarded from "+peer+" "+strconv.Quote(block), linesByName(c.All()), linesByName(d.All()), orig,
					"x-forwarded-for", "x-forwarded-proto")
			}
		}
		var ra, rb fasthttp.ResponseHeader
		raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + block + "\r\n"
		if ra.Read(bufio.NewReader(strings.NewReader(raw))) == nil {
			_ = rb.Read(bufio.NewReader(strings.NewReader(raw)))
			orig := linesByName(ra.All())
			SanitizeResponse(&ra)
			refDropHop(&rb)
			sameLines(t, "response "+strconv.Quote(block), linesByName(ra.All()), linesByName(rb.All()), orig)
		}
	})
}

// linesByName is a header's field lines per name (ASCII lower case), in
// order.
func linesByName(all iter.Seq2[[]byte, []byte]) map[string][]string {
	m := map[string][]string{}
	for k, v := range all {
		n := strings.ToLower(string(k))
		m[n] = append(m[n], string(v))
	}
	return m
}

// sameLines fails unless got holds the fields want holds with the same
// lines, and the lines of each field but those set (which the hygiene
// writes itself) in the order orig had them.
func sameLines(t *testing.T, what string, got, want, orig map[string][]string, set ...string) {
	t.Helper()
	sorted := func(v []string) []string { return slices.Sorted(slices.Values(v)) }
	for n, w := range want {
		if !slices.Equal(sorted(got[n]), sorted(w)) {
			t.Fatalf("%s: %s is %q, want %q", what, n, got[n], w)
		}
	}
	for n, g := range got {
		if _, ok := want[n]; !ok {
			t.Fatalf("%s: %s %q is left, the reference drops it", what, n, g)
		}
		if !slices.Contains(set, n) && !slices.Equal(g, orig[n]) {
			t.Fatalf("%s: %s is %q, in another order than it came: %q", what, n, g, orig[n])
		}
	}
}

// BenchmarkSanitize: the hygiene of a typical request (no hop-by-hop
// field) and of nginx's answer (Connection: keep-alive), one pass against
// the unconditional reference.
func BenchmarkSanitize(b *testing.B) {
	const reqRaw = "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer t\r\nAccept: */*\r\nUser-Agent: wrk\r\n\r\n"
	const respRaw = "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 04 Dec 2026 21:00:00 GMT\r\nContent-Type: application/json\r\n" +
		"Content-Length: 11\r\nConnection: keep-alive\r\n\r\n"
	var req fasthttp.RequestHeader
	var resp fasthttp.ResponseHeader
	if req.Read(bufio.NewReader(strings.NewReader(reqRaw))) != nil || resp.Read(bufio.NewReader(strings.NewReader(respRaw))) != nil {
		b.Fatal("parse")
	}
	for _, c := range []struct {
		name string
		req  func(*fasthttp.RequestHeader)
		resp func(*fasthttp.ResponseHeader)
	}{
		{"onepass", func(h *fasthttp.RequestHeader) { Sanitize(h) }, SanitizeResponse},
		{"reference", refSanitize, func(h *fasthttp.ResponseHeader) { refDropHop(h) }},
	} {
		b.Run("request/"+c.name, func(b *testing.B) {
			var h fasthttp.RequestHeader
			b.ReportAllocs()
			for b.Loop() {
				req.CopyTo(&h)
				c.req(&h)
			}
		})
		b.Run("response/"+c.name, func(b *testing.B) {
			var h fasthttp.ResponseHeader
			b.ReportAllocs()
			for b.Loop() {
				resp.CopyTo(&h)
				c.resp(&h)
			}
		})
	}
}

// BenchmarkSetForwarded: an untrusted client's request, as in the bench.
func BenchmarkSetForwarded(b *testing.B) {
	var req fasthttp.RequestHeader
	if req.Read(bufio.NewReader(strings.NewReader("GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer t\r\nAccept: */*\r\n\r\n"))) != nil {
		b.Fatal("parse")
	}
	trusted := Trusted{netip.MustParsePrefix("10.0.0.0/8")}
	peer := netip.MustParseAddr("127.0.0.1")
	sent := sentOptional(&req)
	b.Run("onepass", func(b *testing.B) {
		var h fasthttp.RequestHeader
		var scratch []byte
		b.ReportAllocs()
		for b.Loop() {
			req.CopyTo(&h)
			scratch = trusted.SetForwarded(&h, peer, false, sent, scratch)
		}
	})
	b.Run("reference", func(b *testing.B) {
		var h fasthttp.RequestHeader
		b.ReportAllocs()
		for b.Loop() {
			req.CopyTo(&h)
			refSetForwarded(trusted, &h, peer, false)
		}
	})
}
