package proxy

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// BenchmarkHandle measures the proxy's own cost per request (routing, header
// hygiene, limits off, upstream on loopback) and its allocations.
func BenchmarkHandle(b *testing.B) {
	up := startUpstream(&testing.T{})
	p, _ := newTestProxy(&testing.T{}, Options{Auth: fakeAuth{}}, up)
	var req fasthttp.Request
	_ = req.Read(bufioReader("GET /api/v1/orders/7 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nAccept: */*\r\n\r\n"))
	addr := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 4000}
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		var r fasthttp.Request
		req.CopyTo(&r)
		ctx.Init(&r, addr, nil)
		p.Handle(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatal(ctx.Response.StatusCode())
		}
	}
}
