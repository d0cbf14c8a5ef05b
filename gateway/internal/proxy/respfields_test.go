package proxy

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
)

// asSentUpstream is an upstream that writes the fields set puts in its
// answers with their names as given, as a fasthttp service with
// DisableHeaderNamesNormalizing, or one writing lower case, does.
func asSentUpstream(t *testing.T, set func(h *fasthttp.ResponseHeader)) *fakeUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.DisableNormalizing()
		set(&ctx.Response.Header)
		ctx.SetBodyString("ok")
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return &fakeUpstream{addr: ln.Addr().String()}
}

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
	up := asSentUpstream(t, func(h *fasthttp.ResponseHeader) {
		h.Set("X-Request-ID", "upstream-id")
		h.Set("x-request-id", "upstream-id-2")
		h.Set("RateLimit", "limit=1, remaining=0, reset=9")
		h.Set("RateLimit-Policy", "1;w=9")
		h.Set("access-control-allow-origin", "*")
		h.Set("Access-Control-Allow-Credentials", "false")
		h.Set("X-Other", "kept")
	})
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

// On the fasthttp transport the upstream's answer keeps its names as sent,
// and hop-by-hop fields in another letter case than fasthttp's canonical
// one (keep-alive, upgrade, proxy-authenticate from an upstream that writes
// names in lower case) were found but not deleted: they reached the client.
func TestUpstreamHopByHopFieldsInAnyCaseAreDropped(t *testing.T) {
	up := asSentUpstream(t, func(h *fasthttp.ResponseHeader) {
		h.Set("keep-alive", "timeout=5")
		h.Set("UPGRADE", "h2c")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("proxy-authenticate", "Basic")
		h.Set("x-other", "kept")
	})
	p, _ := newTestProxy(t, Options{}, up)
	ctx := serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
	var left []string
	other := false
	for k := range ctx.Response.Header.All() {
		if classify(k) != 0 {
			left = append(left, string(k))
		}
		other = other || strings.EqualFold(string(k), "x-other")
	}
	if ctx.Response.StatusCode() != 200 || len(left) != 0 || !other {
		t.Fatalf("%d: hop-by-hop fields %q reach the client (x-other kept: %v)", ctx.Response.StatusCode(), left, other)
	}
}

// A field the upstream's Connection names is dropped whatever the spelling
// of either name: on the fasthttp transport the answer keeps names as sent,
// Peek("Connection") missed a "connection" field and DelBytes removed only
// the token's exact spelling, so x-secret named as X-Secret, or any field a
// lower-case connection named, reached the client.
func TestUpstreamConnectionNamedFieldsInAnyCaseAreDropped(t *testing.T) {
	for _, c := range []struct{ conn, value, field string }{
		{"Connection", "X-Secret", "X-Secret"},
		{"Connection", "X-Secret", "x-secret"},
		{"connection", "x-secret", "x-secret"},
		{"connection", "close, X-SECRET", "x-Secret"},
	} {
		up := asSentUpstream(t, func(h *fasthttp.ResponseHeader) {
			h.Set(c.conn, c.value)
			h.Set(c.field, "internal-token")
			h.Set("x-other", "kept")
		})
		p, _ := newTestProxy(t, Options{}, up)
		ctx := serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
		var left []string
		other := false
		for k, v := range ctx.Response.Header.All() {
			if asciiEqualFold(k, "x-secret") || asciiEqualFold(k, "connection") && !bytes.Equal(v, []byte("keep-alive")) {
				left = append(left, string(k)+": "+string(v))
			}
			other = other || strings.EqualFold(string(k), "x-other")
		}
		if ctx.Response.StatusCode() != 200 || len(left) != 0 || !other {
			t.Errorf("%s: %s, %s: %d: %q reach the client (x-other kept: %v)", c.conn, c.value, c.field, ctx.Response.StatusCode(), left, other)
		}
	}
}
