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

// A preflight's method is matched byte for byte: browsers normalise only
// DELETE, GET, HEAD, OPTIONS, POST and PUT to upper case, so fetch(...,
// {method: "patch"}) asks for "patch", which the browser itself then finds
// missing from Access-Control-Allow-Methods ("PATCH"). The folded match
// answered that preflight 204, an allowance the browser did not honour.
func TestCORSPreflightMethodIsCaseSensitive(t *testing.T) {
	up := startUpstream(t)
	c := DefaultCORS([]string{"https://shop.example"})
	p, _ := newTestProxy(t, Options{CORS: &c}, up)
	for _, m := range []struct {
		method string
		status int
	}{{"PATCH", 204}, {"patch", 403}, {"Delete", 403}, {"DELETE", 204}} {
		ctx := serve(p, "OPTIONS /api/v1/orders HTTP/1.1\r\nHost: gw\r\nOrigin: https://shop.example\r\nAccess-Control-Request-Method: "+m.method+"\r\n\r\n")
		if got := ctx.Response.StatusCode(); got != m.status {
			t.Errorf("preflight for %q: %d %s, want %d", m.method, got, ctx.Response.Body(), m.status)
		}
	}
}
