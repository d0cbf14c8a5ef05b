package evloop

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
)

const (
	chunkedRequest = "POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
	chunkedAnswer  = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
)

// memDirection feeds a message one way: a client's request, or the
// upstream's answer to a GET the client sent whole.
type memDirection struct {
	name, head string
	refused    int // the client's status when the message is broken
	feed       func(m *memLoop, b string)
}

var memDirections = []memDirection{
	{"request", chunkedRequest, 400, func(m *memLoop, b string) { m.fromClient(b) }},
	{"answer", chunkedAnswer, 502, func(m *memLoop, b string) { m.fromUpstream(b) }},
	// A head in bare LFs is parsed from a copy in CRLFs (crlfHead), its
	// body followed in the connection's own input.
	{"request with a bare-LF head", strings.ReplaceAll(chunkedRequest, "\r\n", "\n"), 400, func(m *memLoop, b string) { m.fromClient(b) }},
}

// start gives m what comes before the message d feeds.
func (d memDirection) start(m *memLoop) {
	if d.name == "answer" {
		m.fromClient("GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\n\r\n")
	}
}

// A valid chunked message is the same message however it is split: every
// byte arrives in a read of its own here, so every prefix, inside a
// chunk-size line ("5", "5;x=1\r", "0\r") too, must mean "wait", for a
// client's request and for an upstream's answer alike. fasthttp reports
// some of those prefixes with an error needMore did not recognise (a 400,
// or a 502 that also counted against the upstream).
func TestChunkedSplitAnywhere(t *testing.T) {
	const body = "5;x=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
	for _, d := range memDirections {
		m := newMemLoop(t, Options{MaxBodyBytes: 1 << 10})
		d.start(m)
		msg := d.head + body
		for i := range len(msg) {
			if len(m.client.out) > 0 {
				break
			}
			d.feed(m, msg[i:i+1])
			if len(m.client.out) > 0 && i+1 < len(msg) {
				t.Fatalf("%s split after %q: the client got %q", d.name, msg[:i+1], m.client.out)
			}
		}
		if d.name != "answer" {
			if !strings.Contains(string(m.up.out), "hello0123456789abcdef") {
				t.Fatalf("request: the upstream was sent %q", m.up.out)
			}
			m.fromUpstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		rs := m.answers(t)
		if want := map[bool]string{false: "ok", true: "hello0123456789abcdef"}[d.name == "answer"]; len(rs) != 1 || rs[0].StatusCode() != 200 || string(rs[0].Body()) != want {
			t.Fatalf("%s: the client got %q, want 200 %q", d.name, m.client.out, want)
		}
	}
}

// A broken chunked message is still refused, and as soon as the byte that
// breaks it is in: not before (as some of needMore's errors were), not
// later.
func TestBrokenChunkedRefusedAtItsByte(t *testing.T) {
	for _, c := range []struct {
		body   string
		at     int // index of the byte that breaks it
		status int // when not the direction's
	}{
		{"5\nhello\r\n0\r\n\r\n", 1, 0},             // size line ending in a bare LF
		{"5\r\rhello\r\n0\r\n\r\n", 2, 0},           // CR not followed by LF
		{"5;a\nhello\r\n0\r\n\r\n", 3, 0},           // LF inside an extension
		{"5\r\nhelloX\r\n0\r\n\r\n", 9, 0},          // data not ended by CRLF (seen with both bytes)
		{"g\r\n", 0, 0},                             // no size
		{"0000000000000005\r\nhello\r\n", 15, 0},    // more hex digits than fasthttp takes
		{"3\r\nabc\r\n3\r\nabc\r\nZ\r\n", 16, 0},    // a later chunk's size
		{"3\r\nabc\r\n3\r\nabc\r\n3\r\r", 18, 0},    // a later chunk's size line
		{"3\r\nabc\r\n3\r\nabc\rX0\r\n\r\n", 15, 0}, // a later chunk's data
		{"3\r\nabc\r\n800\r\n", 12, 413},            // over MaxBodyBytes (a request), at the size line's end
	} {
		for _, d := range memDirections {
			status := d.refused
			if c.status != 0 {
				if d.name == "answer" {
					continue
				}
				status = c.status
			}
			m := newMemLoop(t, Options{MaxBodyBytes: 1 << 10})
			d.start(m)
			d.feed(m, d.head)
			for i := range c.at {
				if d.feed(m, c.body[i:i+1]); len(m.client.out) > 0 {
					t.Fatalf("%s %q refused after %q, before its byte %d: %q", d.name, c.body, c.body[:i+1], c.at, m.client.out)
				}
			}
			d.feed(m, c.body[c.at:c.at+1])
			if rs := m.answers(t); len(rs) != 1 || rs[0].StatusCode() != status {
				t.Fatalf("%s %q after %q: the client got %q, want %d", d.name, c.body, c.body[:c.at+1], m.client.out, status)
			}
		}
	}
}

// A chunked message arriving in many reads is parsed a bounded number of
// times, not at every read, and its bytes copied out of gnet's buffer
// once: fasthttp parses from the start each time, and gnet's Peek copies
// all the unread input, so either made the work grow with the square of
// the body. Whatever the chunks' size, their lines are walked once
// (chunked.need), the message held as it comes (chunked.hold) and parsed
// when its last chunk is in.
func TestChunkedParsedOnce(t *testing.T) {
	const read = 4000 // not a multiple of any chunk
	for _, c := range []struct{ size, chunk int }{{1 << 20, 4 << 10}, {64 << 10, 1}, {256 << 10, 1000}} {
		data := bytes.Repeat([]byte("0123456789abcdef"), c.size/16)
		var body bytes.Buffer
		for rest := data; len(rest) > 0; rest = rest[min(c.chunk, len(rest)):] {
			fmt.Fprintf(&body, "%x\r\n%s\r\n", min(c.chunk, len(rest)), rest[:min(c.chunk, len(rest))])
		}
		body.WriteString("0\r\n\r\n")
		// Not the bare-LF head: the parser finds its end only in the
		// CRLF copy, and refuses it (431) with more than MaxHeaderBytes
		// behind it, a limit of its own.
		for _, d := range memDirections[:2] {
			m := newMemLoop(t, Options{MaxBodyBytes: 1 << 20})
			d.start(m)
			msg := d.head + body.String()
			before := m.l.parses
			for at := 0; at < len(msg); at += read {
				d.feed(m, msg[at:min(at+read, len(msg))])
			}
			if parses := m.l.parses - before; parses > 3 {
				t.Errorf("%s, %d bytes in %d-byte chunks, %d reads: parsed %d times", d.name, c.size, c.chunk, (len(msg)+read-1)/read, parses)
			}
			// Nor is all the input so far copied out of gnet's buffer at
			// each look (Peek, when the input spans reads).
			if copied := m.client.copied + m.up.copied; copied > 2*len(msg) {
				t.Errorf("%s, %d bytes in %d-byte chunks, %d reads: gnet would copy %d bytes", d.name, c.size, c.chunk, (len(msg)+read-1)/read, copied)
			}
			got := m.up.out
			if d.name == "answer" {
				got = nil
				if rs := m.answers(t); len(rs) == 1 {
					got = rs[0].Body()
				}
			}
			if !bytes.HasSuffix(got, data) {
				t.Fatalf("%s, %d bytes in %d-byte chunks: %d bytes came through; client %.300q", d.name, c.size, c.chunk, len(got), m.client.out)
			}
		}
	}
}

// parsedVerdict is when parsing at every read would decide on msg (a
// request, or an answer): the length of the first prefix that parses or is
// refused, and whether it parsed. A bare LF in the trailer section is
// refused as it comes (errBareLF), where the parser waits.
func parsedVerdict(msg string, limit int, answer bool) (int, bool) {
	trailer := false // the parser has taken the last chunk's line
	for k := 1; k <= len(msg); k++ {
		if trailer && msg[k-1] == '\n' && msg[k-2] != '\r' {
			return k, false
		}
		var req fasthttp.Request
		rd := bytes.NewReader([]byte(msg[:k]))
		br := bufio.NewReaderSize(rd, 16<<10)
		var err error
		if answer {
			var resp fasthttp.Response
			err = resp.ReadLimitBody(br, limit)
		} else if err = req.Header.Read(br); err == nil {
			err = req.ContinueReadBody(br, limit)
		}
		// Right after the last chunk's line fasthttp takes its input's
		// end for the message's, none or part of the trailer section in
		// (that part left unread): a wait, not a verdict, until the
		// section's CRLFCRLF is in.
		if err == nil && rd.Len()+br.Buffered() == 0 && strings.HasSuffix(msg[:k], "\r\n\r\n") {
			return k, true
		}
		trailer = trailer || err == nil
		if err != nil && !needMore(err) {
			return k, false
		}
	}
	return -1, false
}

// Following the chunks changes nothing but when the parser runs: on random
// chunked messages, a few bytes of them changed, dropped or added, the
// verdict (parsed or refused) comes after the same byte as when every byte's
// read was parsed, both ways, the body limit included. (20,000 of each
// agreed when written; a few hundred run here.)
func TestChunkWalkAgreesWithTheParser(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 12))
	alphabet := []byte("0123456789abcdefABCDEFgxz;=\r\n \t")
	for range 300 {
		var body bytes.Buffer
		for range 1 + r.IntN(4) {
			size := r.IntN(0x30)
			fmt.Fprintf(&body, "%x", size)
			if r.IntN(4) == 0 {
				body.WriteString(";x=y")
			}
			body.WriteString("\r\n")
			body.Write(bytes.Repeat([]byte("d"), size))
			body.WriteString("\r\n")
		}
		body.WriteString("0\r\n\r\n")
		b := body.Bytes()
		for range r.IntN(3) {
			switch r.IntN(3) {
			case 0:
				b[r.IntN(len(b))] = alphabet[r.IntN(len(alphabet))]
			case 1:
				i := r.IntN(len(b))
				b = append(b[:i], b[i+1:]...)
			case 2:
				i := r.IntN(len(b))
				b = append(b[:i], append([]byte{alphabet[r.IntN(len(alphabet))]}, b[i:]...)...)
			}
		}
		for _, answer := range []bool{false, true} {
			head := chunkedRequest
			if answer {
				head = chunkedAnswer
			}
			msg := head + string(b)
			wantAt, wantOK := parsedVerdict(msg, 40, answer)
			m := newMemLoop(t, Options{MaxBodyBytes: 40, MaxResponseBytes: 40})
			if answer {
				m.fromClient("GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\n\r\n")
			}
			gotAt := -1
			for k := 0; k < len(msg); k++ {
				if answer {
					m.fromUpstream(msg[k : k+1])
				} else {
					m.fromClient(msg[k : k+1])
				}
				if len(m.client.out) > 0 || (!answer && len(m.up.out) > 0) {
					gotAt = k + 1
					break
				}
			}
			gotOK := !answer && len(m.up.out) > 0 || answer && bytes.HasPrefix(m.client.out, []byte("HTTP/1.1 200"))
			if gotAt != wantAt || gotOK != wantOK {
				t.Fatalf("answer %v %q: verdict after %d bytes (ok %v), parsing at every byte: after %d (ok %v) %q", answer, b, gotAt-len(head), gotOK, wantAt-len(head), wantOK, m.client.out)
			}
		}
	}
}

// A chunk-size line is bounded (4 KiB with its extension, as net/http
// bounds it) once it arrives in pieces: the loop keeps a message's bytes
// until it parses, and a line that never ended grew the connection's
// buffer until the read timeout (fasthttp's parser takes any length, and
// its own server keeps none of it). A long line just under the bound still
// goes through.
func TestLongChunkLineRefused(t *testing.T) {
	for _, d := range memDirections[:2] {
		m := newMemLoop(t, Options{MaxBodyBytes: 1 << 10})
		d.start(m)
		d.feed(m, d.head+"5;")
		ext := strings.Repeat("x", maxChunkLine-len("5;\r\n"))
		for at := 0; at < len(ext); at += 1000 {
			if d.feed(m, ext[at:min(at+1000, len(ext))]); len(m.client.out) > 0 {
				t.Fatalf("%s: refused with a %d-byte chunk-size line: %q", d.name, 2+min(at+1000, len(ext)), m.client.out)
			}
		}
		d.feed(m, "x")
		if rs := m.answers(t); len(rs) != 1 || rs[0].StatusCode() != d.refused {
			t.Fatalf("%s: a chunk-size line over %d bytes: the client got %q, want %d", d.name, maxChunkLine, m.client.out, d.refused)
		}

		m = newMemLoop(t, Options{MaxBodyBytes: 1 << 10})
		d.start(m)
		d.feed(m, d.head+"5;")
		d.feed(m, ext)
		d.feed(m, "\r\nhello\r\n0\r\n\r\n")
		if d.name == "request" {
			m.fromUpstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		if rs := m.answers(t); len(rs) != 1 || rs[0].StatusCode() != 200 {
			t.Fatalf("%s: a %d-byte chunk-size line: the client got %.200q, want 200", d.name, maxChunkLine, m.client.out)
		}
	}
}

// A chunked body's framing is bounded by the body limit: every line is
// bounded (TestLongChunkLineRefused) and the data by the limit, but 1-byte
// chunks with long extensions were held until the data reached the limit,
// some 4,000 times its size (600 MB of the gateway's memory for one client
// in its read timeout). Refused (413 for a request, 502 for an answer)
// before the message held is twice the limit and a longest line; a body of
// the limit's size in 8-byte chunks still goes through (and in 1-byte
// chunks: TestSmallChunksUnderTheLimit).
func TestChunkFramingBounded(t *testing.T) {
	const limit = 1 << 10
	chunk := "1;" + strings.Repeat("x", 100) + "\r\nx\r\n"
	for _, d := range memDirections[:2] {
		m := newMemLoop(t, Options{MaxBodyBytes: limit, MaxResponseBytes: limit})
		d.start(m)
		d.feed(m, d.head)
		fed := 0
		for ; len(m.client.out) == 0 && fed < 100*limit; fed += len(chunk) {
			d.feed(m, chunk)
		}
		want := map[string]int{"request": 413, "answer": 502}[d.name]
		if rs := m.answers(t); len(rs) != 1 || rs[0].StatusCode() != want || fed > 2*limit+maxChunkLine {
			t.Fatalf("%s: after %d bytes of 1-byte chunks the client got %.200q, want %d within %d bytes", d.name, fed, m.client.out, want, 2*limit+maxChunkLine)
		}

		m = newMemLoop(t, Options{MaxBodyBytes: limit, MaxResponseBytes: limit})
		d.start(m)
		d.feed(m, d.head)
		for range limit / 8 {
			d.feed(m, "8\r\n01234567\r\n")
		}
		d.feed(m, "0\r\n\r\n")
		if d.name == "request" {
			m.fromUpstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		if rs := m.answers(t); len(rs) != 1 || rs[0].StatusCode() != 200 || d.name == "answer" && len(rs[0].Body()) != limit {
			t.Fatalf("%s: a %d-byte body in 8-byte chunks: the client got %.200q, want 200", d.name, limit, m.client.out)
		}
	}
}

// A body under the limit in the smallest chunks, with no extension, goes
// through on the loop as on the fasthttp transport: bounding all framing by
// the limit refused a client's or an upstream's 1-byte chunks from a fifth
// of the limit on (413 or 502), as a token-by-token stream sends them.
func TestSmallChunksUnderTheLimit(t *testing.T) {
	const limit = 16 << 10
	for _, d := range memDirections[:2] {
		m := newMemLoop(t, Options{MaxBodyBytes: limit, MaxResponseBytes: limit})
		d.start(m)
		d.feed(m, d.head)
		for range limit / 64 {
			d.feed(m, strings.Repeat("1\r\nx\r\n", 64))
		}
		d.feed(m, "0\r\n\r\n")
		if d.name == "request" {
			if !strings.HasSuffix(string(m.up.out), "\r\n\r\n"+strings.Repeat("x", limit)) {
				t.Fatalf("request: the upstream was sent %.300q, the client %.200q", m.up.out, m.client.out)
			}
			m.fromUpstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		if rs := m.answers(t); len(rs) != 1 || rs[0].StatusCode() != 200 || d.name == "answer" && len(rs[0].Body()) != limit {
			t.Fatalf("%s: a %d-byte body in 1-byte chunks: the client got %.200q, want 200", d.name, limit, m.client.out)
		}
	}
}

// A chunked message the loop held (chunked.hold) takes only its own bytes
// from the connection: the request after it is no part of its body. It is
// not answered either: a chunked request's connection closes after its
// answer (proxy's checkHead), where it used to be the next request.
func TestRequestAfterAHeldChunkedBody(t *testing.T) {
	m := newMemLoop(t, Options{MaxBodyBytes: 1 << 10})
	m.fromClient(chunkedRequest + "5\r\nhel")
	m.fromClient("lo\r\n3\r\nabc\r\n0\r\n\r\nGET /api/v1/orders/2 HTTP/1.1\r\nHost: gw\r\n\r\n")
	m.fromUpstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nk1")
	if rs := m.answers(t); len(rs) != 1 || string(rs[0].Body()) != "k1" || !m.cl.close {
		t.Fatalf("the client got %q, closed %v; want k1 and a close", m.client.out, m.cl.close)
	}
	if up := string(m.up.out); !strings.HasSuffix(up, "\r\n\r\nhelloabc") {
		t.Fatalf("the upstream was sent %q", up)
	}
}

// A chunked message's trailer section is part of it however it is split:
// at every byte, the message is sent as two reads, so its trailer comes
// whole with the rest, or cut anywhere, or in a read of its own after the
// last chunk's line. fasthttp takes the end of its input after that line
// for the end of the message, so a request went upstream without its
// trailer and the trailer was read as the next request (200, then 400 and
// a close); an answer's trailer was a late answer that closed the upstream
// connection. Found by review.
func TestTrailerSplitAnywhere(t *testing.T) {
	for _, trailer := range []string{"\r\n", "X-Checksum: abc\r\nX-Other: d\r\n\r\n"} {
		body := "5\r\nhello\r\n0\r\n" + trailer
		for _, d := range memDirections {
			msg := d.head + body
			for i := len(d.head); i < len(msg); i++ {
				m := newMemLoop(t, Options{MaxBodyBytes: 1 << 10})
				d.start(m)
				var acts []gnet.Action
				for _, part := range []string{msg[:i], msg[i:]} {
					if d.name == "answer" {
						acts = append(acts, m.fromUpstream(part))
					} else {
						d.feed(m, part)
					}
				}
				where := fmt.Sprintf("%s split after %q", d.name, msg[:i])
				if d.name == "answer" {
					if acts[0] != gnet.None || acts[1] != gnet.None || len(m.up.in) > 0 {
						t.Fatalf("%s: the upstream connection's reads: %v, %q left unread", where, acts, m.up.in)
					}
				} else if trailer != "\r\n" {
					// A request with trailer fields is refused whole
					// (proxy.MarkTrailer): one 400, nothing upstream, closed.
					if rs := m.answers(t); len(rs) != 1 || rs[0].StatusCode() != 400 || !m.cl.close || len(m.up.out) > 0 {
						t.Fatalf("%s: the client got %q, the upstream %q; want one 400 and a close, nothing upstream", where, m.client.out, m.up.out)
					}
					continue
				} else {
					// An empty trailer is not sent.
					if up := string(m.up.out); strings.Count(up, "POST ") != 1 || !strings.Contains(up, "hello") || !strings.Contains(up, strings.TrimSuffix(trailer, "\r\n")) {
						t.Fatalf("%s: the upstream was sent %q", where, up)
					}
					m.fromUpstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
				// A chunked request's connection closes after its answer
				// (proxy's checkHead); the client of a chunked answer keeps it.
				rs := m.answers(t)
				if want := map[bool]string{false: "ok", true: "hello"}[d.name == "answer"]; len(rs) != 1 || rs[0].StatusCode() != 200 || string(rs[0].Body()) != want || m.cl.close == (d.name == "answer") {
					t.Fatalf("%s: the client got %q, closed %v; want one 200 %q, closed only after a chunked request", where, m.client.out, m.cl.close, want)
				}
			}
		}
	}
}

// A bare LF ending a chunked message's trailer section ("0\r\n\n") is
// refused however the message is split: 400 and a close for a request,
// nothing upstream, and 502 for an answer. fasthttp's parser ends the
// section there, where a hop that wants CRLF reads on, so a request after
// it was a second request to that hop's one. The loop took it when the
// message came in two reads and waited out the read timeout (408) when
// it came in one; an answer waited for the upstream's timeout.
func TestTrailerBareLFRefused(t *testing.T) {
	const next = "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\n\r\n"
	for _, c := range []struct {
		d       memDirection
		trailer string
	}{
		{memDirections[0], "\n"}, {memDirections[1], "\n"},
		// The last field line's LF bare: a hop that wants CRLF takes the
		// CRLF after it for that line's end, not the section's.
		{memDirections[0], "X: y\n\r\n"}, {memDirections[1], "X: y\n\r\n"},
	} {
		d := c.d
		msg := d.head + "5\r\nhello\r\n0\r\n" + c.trailer
		if d.name == "request" {
			msg += next
		}
		for i := len(d.head); i <= len(msg); i++ {
			m := newMemLoop(t, Options{MaxBodyBytes: 1 << 10})
			d.start(m)
			for _, part := range []string{msg[:i], msg[i:]} {
				if part != "" && len(m.client.out) == 0 {
					d.feed(m, part)
				}
			}
			rs := m.answers(t)
			if len(rs) != 1 || rs[0].StatusCode() != d.refused || d.name == "request" && (!m.cl.close || len(m.up.out) > 0) {
				t.Fatalf("%s split after %q: the client got %q, the upstream %q; want one %d (and for a request a close, nothing upstream)",
					d.name, msg[:i], m.client.out, m.up.out, d.refused)
			}
		}
	}
}

// A trailer section arriving in pieces is bounded, as a chunk-size line is:
// one that never ends is refused once over MaxHeaderBytes (the parser's
// read buffer), not kept until the read timeout. The bound follows the
// configured limit: it was the default 16 KiB whatever MaxHeaderBytes said.
func TestLongTrailerRefused(t *testing.T) {
	for _, headerBytes := range []int{0, 32 << 10} { // the default (16 KiB), and raised
		for _, d := range memDirections[:2] {
			m := newMemLoop(t, Options{MaxBodyBytes: 1 << 10, MaxHeaderBytes: headerBytes})
			bound := m.l.s.o.MaxHeaderBytes
			d.start(m)
			d.feed(m, d.head+"5\r\nhello\r\n0\r\nX-Long: ")
			long := strings.Repeat("x", 1000)
			for range bound / len(long) {
				if d.feed(m, long); len(m.client.out) > 0 {
					t.Fatalf("%s: refused with a trailer under %d bytes: %.200q", d.name, bound, m.client.out)
				}
			}
			d.feed(m, long)
			if rs := m.answers(t); len(rs) != 1 || rs[0].StatusCode() != d.refused {
				t.Fatalf("%s: a trailer over %d bytes: the client got %.200q, want %d", d.name, bound, m.client.out, d.refused)
			}
		}
	}
	// Under the raised limit a 20 KiB trailer, in pieces, is taken whole:
	// an answer's goes through, a request's reaches the chain, which
	// refuses trailer fields (proxy.MarkTrailer), not the loop's bound.
	for _, d := range memDirections[:2] {
		m := newMemLoop(t, Options{MaxBodyBytes: 1 << 10, MaxHeaderBytes: 32 << 10})
		d.start(m)
		d.feed(m, d.head+"5\r\nhello\r\n0\r\n")
		for i := range 20 {
			d.feed(m, fmt.Sprintf("X-Long-%d: %s\r\n", i, strings.Repeat("x", 1000)))
		}
		d.feed(m, "\r\n")
		// Read as bytes: the answer's head holds the trailer's fields, over
		// what answers' reader takes.
		want, why := "HTTP/1.1 200 ", ""
		if d.name != "answer" {
			want, why = "HTTP/1.1 400 ", "fields in its chunked trailer section"
		}
		if out := string(m.client.out); !strings.HasPrefix(out, want) || !strings.Contains(out, why) || strings.Count(out, "HTTP/1.1 ") != 1 {
			t.Fatalf("%s: a 20 KiB trailer under a 32 KiB limit: the client got %.300q, want one %q %q", d.name, out, want, why)
		}
	}
}
