package evloop

import (
	"strings"
	"testing"
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
			// fasthttp takes the message as whole after the last chunk's
			// line, the blank line after it still to come.
			if len(m.client.out) > 0 && i+1 < len(msg)-2 {
				t.Fatalf("%s split after %q: the client got %q", d.name, msg[:i+1], m.client.out)
			}
		}
		if d.name == "request" {
			if !strings.Contains(string(m.up.out), "hello0123456789abcdef") {
				t.Fatalf("request: the upstream was sent %q", m.up.out)
			}
			m.fromUpstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		rs := m.answers(t)
		if want := map[string]string{"request": "ok", "answer": "hello0123456789abcdef"}[d.name]; len(rs) != 1 || rs[0].StatusCode() != 200 || string(rs[0].Body()) != want {
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
				if d.name != "request" {
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
