package proxy

import (
	"strings"
	"testing"
)

// TestCORSPreflightMethodAndHeaders: a preflight for a method the policy
// does not allow is refused here (403 cors-method), never sent upstream;
// the requested headers are not checked: the 204 lists the allowed ones and
// the browser refuses the others (Fetch standard, CORS-preflight fetch).
func TestCORSPreflightMethodAndHeaders(t *testing.T) {
	up := startUpstream(t)
	c := DefaultCORS([]string{"https://shop.example"})
	p, _ := newTestProxy(t, Options{CORS: &c}, up)
	ctx := serve(p, "OPTIONS /api/v1/orders HTTP/1.1\r\nHost: gw\r\nOrigin: https://shop.example\r\nAccess-Control-Request-Method: TRACE\r\n\r\n")
	if got := ctx.Response.StatusCode(); got != 403 || !strings.Contains(string(ctx.Response.Body()), "cors-method") {
		t.Fatalf("preflight for TRACE: %d %s", got, ctx.Response.Body())
	}
	ctx = serve(p, "OPTIONS /api/v1/orders HTTP/1.1\r\nHost: gw\r\nOrigin: https://shop.example\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-user-id\r\n\r\n")
	allowed := string(ctx.Response.Header.Peek("Access-Control-Allow-Headers"))
	if ctx.Response.StatusCode() != 204 || allowed != c.Headers || strings.Contains(strings.ToLower(allowed), "x-user-id") {
		t.Fatalf("preflight asking for X-User-ID: %d, Access-Control-Allow-Headers %q", ctx.Response.StatusCode(), allowed)
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("preflights reached the upstream: %d hits", n)
	}
}
