package proxy

import (
	"bytes"
	"strings"
	"testing"
)

// cookieLines are the Cookie field lines of a request head as written, in
// order, each value as it stands after the colon and its white space.
func cookieLines(head []byte) []string {
	var out []string
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		name, value, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte(":"))
		if ok && strings.EqualFold(string(name), "Cookie") {
			out = append(out, string(bytes.Trim(value, " \t")))
		}
	}
	return out
}

// The client's Cookie lines reach the upstream byte for byte, on both
// transports. fasthttp parses a request's cookies when the header is first
// walked (every pass of the chain's hygiene does) and writes them back as
// it understood them: "=v" went upstream as "v", which most servers read as
// a cookie named v, quotes round a value were dropped, separators
// respaced, and two Cookie lines became one.
func TestCookieLinesReachUpstreamAsSent(t *testing.T) {
	const get = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n"
	for _, c := range []struct {
		name, fields string
		want         []string
	}{
		{"nameless", "Cookie: =v\r\n", []string{"=v"}},
		{"no space after ;", "Cookie: a=1;b=2\r\n", []string{"a=1;b=2"}},
		{"empty pair", "Cookie: a=1; ; b=2\r\n", []string{"a=1; ; b=2"}},
		{"quoted value", `Cookie: sid="x y"` + "\r\n", []string{`sid="x y"`}},
		{"two lines", "Cookie: a=1\r\nAccept: */*\r\ncookie: b=2\r\n", []string{"a=1", "b=2"}},
		{"canary cookie still read", "Cookie: release-tag=v1;x==y\r\n", []string{"release-tag=v1;x==y"}},
		{"named by Connection", "Connection: Cookie\r\nCookie: a=1\r\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := startUpstream(t)
			p, _ := newTestProxy(t, Options{}, up)
			raw := get + c.fields + "\r\n"
			if ctx := serve(p, raw); ctx.Response.StatusCode() != 200 {
				t.Fatalf("fasthttp: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if got := cookieLines(up.last.Load().RawHeaders()); strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("fasthttp: upstream got Cookie lines %q, want %q", got, c.want)
			}
			x, s := beginOnLoop(t, p, raw)
			if s != Send {
				t.Fatalf("event loop: step %v, %d %s", s, x.Resp.StatusCode(), x.Resp.Body())
			}
			if got := cookieLines(x.Req.Header.AppendBytes(nil)); strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("event loop: upstream gets Cookie lines %q, want %q", got, c.want)
			}
		})
	}
}

// A request without Content-Type reaches the upstream without one, on both
// transports: fasthttp writes application/octet-stream for a request with
// a body and no type, so the upstream was told a media type the client
// never claimed (RFC 9110 §8.3 leaves a missing type to the recipient,
// which may sniff the content) and a client's type-less POST was
// indistinguishable from one declaring octet-stream.
func TestMissingContentTypeStaysMissing(t *testing.T) {
	raw := "POST /api/v1/orders/7 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nContent-Length: 2\r\n\r\n{}"
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}}, up)
	if ctx := serve(p, raw); ctx.Response.StatusCode() != 200 {
		t.Fatalf("fasthttp: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if ct := up.last.Load().ContentType(); len(ct) > 0 {
		t.Errorf("fasthttp: upstream got Content-Type %q, the client sent none", ct)
	}
	x, s := beginOnLoop(t, p, raw)
	if s != Send {
		t.Fatalf("event loop: step %v, %d %s", s, x.Resp.StatusCode(), x.Resp.Body())
	}
	if head := x.Req.Header.AppendBytes(nil); bytes.Contains(bytes.ToLower(head), []byte("content-type")) {
		t.Errorf("event loop: upstream gets a Content-Type the client did not send:\n%s", head)
	}
}
