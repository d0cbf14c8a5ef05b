package evloop

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkExchange is one request and its answer through serve and answer
// (the chain included) over in-memory connections, each message arriving
// in reads of at most 4000 bytes: the loop's per-request cost without the
// sockets. A chunked request closes its connection, so the chunked-post
// cases exclude the setup of the next one.
func BenchmarkExchange(b *testing.B) {
	chunkedBody := func(n, chunk int) string {
		var sb strings.Builder
		for rest := n; rest > 0; rest -= min(chunk, rest) {
			fmt.Fprintf(&sb, "%x\r\n%s\r\n", min(chunk, rest), strings.Repeat("c", min(chunk, rest)))
		}
		return sb.String() + "0\r\n\r\n"
	}
	const get = "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	okAnswer := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 128\r\n\r\n" + strings.Repeat("a", 128)
	post := func(n int) string {
		return fmt.Sprintf("POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("p", n))
	}
	for _, c := range []struct{ name, req, answer string }{
		{"get", get, okAnswer},
		{"post-1k", post(1 << 10), okAnswer},
		{"post-256k", post(256 << 10), okAnswer},
		{"get-answer-256k", get, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", 256<<10, strings.Repeat("a", 256<<10))},
		{"chunked-post-256k", chunkedRequest + chunkedBody(256<<10, 4<<10), okAnswer},
		{"chunked-post-1m", chunkedRequest + chunkedBody(1<<20, 4<<10), okAnswer},
		{"chunked-answer-256k", get, chunkedAnswer + chunkedBody(256<<10, 4<<10)},
		{"chunked-answer-1m", get, chunkedAnswer + chunkedBody(1<<20, 4<<10)},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := newMemLoop(b, Options{MaxBodyBytes: 1 << 20})
			b.ReportAllocs()
			for b.Loop() {
				m.client.out, m.up.out = m.client.out[:0], m.up.out[:0]
				for at := 0; at < len(c.req); at += 4000 {
					m.fromClient(c.req[at:min(at+4000, len(c.req))])
				}
				for at := 0; at < len(c.answer); at += 4000 {
					m.fromUpstream(c.answer[at:min(at+4000, len(c.answer))])
				}
				if len(m.client.out) == 0 || m.cl.busy {
					b.Fatalf("no answer: client got %q", m.client.out)
				}
				if m.cl.closing {
					// Every chunked request's connection closes after
					// its answer (proxy's checkHead, closes): the next
					// request comes on a new one, set up off the clock,
					// whose input reuses the storage of the last one's
					// (as gnet's buffers are reused).
					b.StopTimer()
					n := newMemLoop(b, Options{MaxBodyBytes: 1 << 20})
					n.client.keep, n.up.keep = m.client.keep[:0], m.up.keep[:0]
					n.client.out, n.up.out = m.client.out[:0], m.up.out[:0]
					m = n
					b.StartTimer()
				}
			}
		})
	}
}
