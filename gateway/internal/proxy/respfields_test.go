package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
)

type allowAll struct{}

func (allowAll) Allow(context.Context, []byte) (quota.Decision, error) {
	return quota.Decision{Allowed: true, Limit: 100, Remaining: 99, Window: time.Second}, nil
}

// On the fasthttp transport the upstream's answer keeps its field names as
// sent, and the gateway's request id, RateLimit and CORS fields replaced
// only a field spelled as the gateway spells it: an upstream's X-Request-ID,
// RateLimit or access-control-allow-origin went to the client beside the
// gateway's. Each now comes once, the gateway's; a field the gateway does
// not set (no limit applied) stays the upstream's.
func TestUpstreamFieldsTheGatewaySetsComeOnce(t *testing.T) {
	// An upstream that writes names as given, as a fasthttp service with
	// DisableHeaderNamesNormalizing, or one in lower case, does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Response.Header
		h.DisableNormalizing()
		h.Set("X-Request-ID", "upstream-id")
		h.Set("x-request-id", "upstream-id-2")
		h.Set("RateLimit", "limit=1, remaining=0, reset=9")
		h.Set("RateLimit-Policy", "1;w=9")
		h.Set("access-control-allow-origin", "*")
		h.Set("Access-Control-Allow-Credentials", "false")
		h.Set("X-Other", "kept")
		ctx.SetBodyString("ok")
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	up := &fakeUpstream{addr: ln.Addr().String()}
	cors := DefaultCORS([]string{"https://shop.example"})
	const req = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\nX-Request-ID: client-id\r\nOrigin: https://shop.example\r\n\r\n"
	fields := func(ctx *fasthttp.RequestCtx) map[string][]string {
		got := map[string][]string{}
		for k, v := range ctx.Response.Header.All() {
			name := strings.ToLower(string(k))
			got[name] = append(got[name], string(v))
		}
		return got
	}
	for _, c := range []struct {
		name string
		o    Options
		want map[string]string
	}{
		{"limited", Options{IPLimit: allowAll{}, CORS: &cors}, map[string]string{
			"x-request-id": "client-id", "ratelimit": "limit=100, remaining=99, reset=0", "ratelimit-policy": "100;w=1",
			"access-control-allow-origin": "https://shop.example", "access-control-allow-credentials": "true", "x-other": "kept",
		}},
		{"no limit applied", Options{CORS: &cors}, map[string]string{
			"x-request-id": "client-id", "ratelimit": "limit=1, remaining=0, reset=9", "ratelimit-policy": "1;w=9",
			"access-control-allow-origin": "https://shop.example", "x-other": "kept",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, _ := newTestProxy(t, c.o, up)
			ctx := serve(p, req)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			got := fields(ctx)
			for name, want := range c.want {
				if v := got[name]; len(v) != 1 || v[0] != want {
					t.Errorf("%s: client gets %q, want one %q", name, v, want)
				}
			}
		})
	}
}
