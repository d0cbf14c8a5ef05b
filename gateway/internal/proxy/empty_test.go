package proxy

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"
)

// namedLines are the field lines of head named name (any case), values
// trimmed, nil for none: an empty value is an empty string, no line at all
// is nothing.
func namedLines(head []byte, name string) []string {
	var out []string
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		k, v, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte(":"))
		if ok && strings.EqualFold(string(k), name) {
			out = append(out, string(bytes.Trim(v, " \t")))
		}
	}
	return out
}

// The upstream gets a client's field with an empty value as a field with
// an empty value, on both transports: RFC 9110 §5.5 lets a field value be
// empty, and an empty field is not an absent one to whatever reads it
// (a signature over the field, RFC 9421 §2.1, a bot check on User-Agent).
// fasthttp kept User-Agent, Cookie and Content-Type apart from the other
// fields and wrote none of them when empty.
func TestEmptyFieldsReachUpstream(t *testing.T) {
	for _, tc := range []struct {
		name, fields string
		want         []string
		body         string
	}{
		{"User-Agent", "User-Agent:\r\n", []string{""}, ""},
		{"User-Agent", "user-agent: \t\r\n", []string{""}, ""},
		{"Cookie", "Cookie:\r\n", []string{""}, ""},
		{"Cookie", "Cookie:\r\nAccept: */*\r\nCOOKIE:  \r\n", []string{"", ""}, ""},
		{"Cookie", "Cookie: a=1\r\nCookie:\r\n", []string{"a=1", ""}, ""},
		{"X-Empty", "X-Empty:\r\n", []string{""}, ""},
		{"User-Agent", "User-Agent: wrk\r\nCookie:\r\n", []string{"wrk"}, ""},
		// Named by Connection: hop-by-hop, dropped however empty.
		{"User-Agent", "Connection: User-Agent\r\nUser-Agent:\r\n", nil, ""},
		{"Cookie", "Connection: cookie\r\nCookie:\r\n", nil, ""},
		// An empty Content-Type goes on as one: the gateway adds no media
		// type, and drops no field, that the client did not (README, step 6).
		{"Content-Type", "Content-Type:\r\n", []string{""}, ""},
		{"Content-Type", "content-type: \t\r\n", []string{""}, ""},
		{"Content-Type", "Content-Length: 2\r\nContent-Type:\r\n", []string{""}, "{}"},
		{"Content-Type", "Content-Type: application/json\r\n", []string{"application/json"}, ""},
		{"Content-Type", "Connection: Content-Type\r\nContent-Type:\r\n", nil, ""},
		{"Content-Type", "Accept: */*\r\n", nil, ""},
	} {
		t.Run(tc.fields, func(t *testing.T) {
			name := tc.name
			up := startUpstream(t)
			p, _ := newTestProxy(t, Options{}, up)
			raw := "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n" + tc.fields + "\r\n" + tc.body
			if ctx := serve(p, raw); ctx.Response.StatusCode() != 200 {
				t.Fatalf("fasthttp: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if got := namedLines(up.last.Load().RawHeaders(), name); !slices.Equal(got, tc.want) {
				t.Errorf("fasthttp: upstream got %s lines %q, want %q", name, got, tc.want)
			}
			x, s := beginOnLoop(t, p, raw)
			if s != Send {
				t.Fatalf("event loop: step %v, %d %s", s, x.Resp.StatusCode(), x.Resp.Body())
			}
			if got := namedLines(written(t, x), name); !slices.Equal(got, tc.want) {
				t.Errorf("event loop: upstream gets %s lines %q, want %q", name, got, tc.want)
			}
		})
	}
}

// written is the request as the event loop writes it upstream.
func written(t *testing.T, x *Exchange) []byte {
	t.Helper()
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if err := x.Req.Write(w); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	return b.Bytes()
}

// The upstream gets the target's empty query ("/a?") as sent, on both
// transports: RFC 3986 §6.2.3 keeps a delimiter whose component is empty
// ("http://example.com/?" is not "http://example.com/"), and RFC 9110
// §4.2.3's normalisation of http URIs does not remove it, so a cache key
// or a signed target differs between the two.
func TestEmptyQueryReachesUpstream(t *testing.T) {
	for _, tc := range []struct{ target, want string }{
		{"/api/v1/products/1?", "/api/v1/products/1?"},
		{"/api/v1/products/%31?", "/api/v1/products/1?"},        // made canonical
		{"/api/v1//products/1?", "/api/v1/products/1?"},         // made canonical
		{"http://gw/api/v1/products/1?", "/api/v1/products/1?"}, // absolute form
		{"/api/v1/products/1?x", "/api/v1/products/1?x"},
		{"/api/v1/products/1", "/api/v1/products/1"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			up := startUpstream(t)
			p, _ := newTestProxy(t, Options{}, up)
			raw := "GET " + tc.target + " HTTP/1.1\r\nHost: gw\r\n\r\n"
			if ctx := serve(p, raw); ctx.Response.StatusCode() != 200 {
				t.Fatalf("fasthttp: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if got := string(up.last.Load().RequestURI()); got != tc.want {
				t.Errorf("fasthttp: upstream got %q, want %q", got, tc.want)
			}
			x, s := beginOnLoop(t, p, raw)
			if s != Send {
				t.Fatalf("event loop: step %v, %d %s", s, x.Resp.StatusCode(), x.Resp.Body())
			}
			line, _, _ := bytes.Cut(written(t, x), []byte("\r\n"))
			if want := "GET " + tc.want + " HTTP/1.1"; string(line) != want {
				t.Errorf("event loop: upstream gets %q, want %q", line, want)
			}
		})
	}
}
