package proxy

import "testing"

// TestAuthorizationInTwoLinesIsRefused: Authorization holds one credential
// (RFC 9110 §11.6.2), no list. The gateway verified the first line and sent
// every line upstream, where a reader that takes the last (or joins them)
// authenticated another token than the one X-User-ID and the per-user limit
// were decided by.
func TestAuthorizationInTwoLinesIsRefused(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}}, up)
	for _, raw := range []string{
		"GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nAuthorization: Bearer other\r\n\r\n",
		"GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nX-A: 1\r\nauthorization: Bearer other\r\n\r\n",
		// A public route too: the upstream may still read a token.
		"GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nAuthorization: Bearer other\r\n\r\n",
	} {
		ctx := serve(p, raw)
		if got := ctx.Response.StatusCode(); got != 400 || up.hits.Load() != 0 {
			t.Fatalf("%q: status %d, upstream hits %d; want 400 and none", raw, got, up.hits.Load())
		}
		if ct := string(ctx.Response.Header.ContentType()); ct != "application/problem+json" {
			t.Fatalf("%q: Content-Type %q", raw, ct)
		}
	}
	// One line goes on as before.
	if got := serve(p, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\n\r\n").Response.StatusCode(); got != 200 {
		t.Fatalf("one Authorization line: status %d", got)
	}
	// Without an authenticator (GATEWAY_MODE=routing) the gateway decides
	// nothing by the token, and the lines go on as sent, for the upstream
	// to judge.
	routing, _ := newTestProxy(t, Options{}, up)
	if got := serve(routing, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n").Response.StatusCode(); got != 200 {
		t.Fatalf("two Authorization lines, routing only: status %d, want 200", got)
	}
	var lines []string
	for k, v := range up.last.Load().All() {
		if string(k) == "Authorization" {
			lines = append(lines, string(v))
		}
	}
	if len(lines) != 2 || lines[0] != "Bearer a" || lines[1] != "Bearer b" {
		t.Fatalf("routing only: upstream got Authorization %q, want both lines in order", lines)
	}
}
