package proxy

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func parseHeader(t testing.TB, raw string) *fasthttp.RequestHeader {
	t.Helper()
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatalf("parse: %v", err)
	}
	return &h
}

func TestSanitizeStripsHopByHopAndUserID(t *testing.T) {
	h := parseHeader(t, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n"+
		"Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic x\r\n"+
		"X-User-ID: evil\r\nx_user_id: evil2\r\nX-USER-ID: evil3\r\nX-User-IDs: keep\r\nAuthorization: Bearer t\r\n"+
		"Accept: */*\r\n\r\n")
	Sanitize(h)
	for _, gone := range []string{"Connection", "X-Secret", "Keep-Alive", "Te", "Upgrade", "Proxy-Authorization", "X-User-Id", "X_user_id"} {
		if v := h.Peek(gone); len(v) > 0 {
			t.Errorf("%s survived: %q", gone, v)
		}
	}
	for k := range h.All() {
		if isUserHeader(k) {
			t.Errorf("user id lookalike %q survived", k)
		}
	}
	for _, kept := range []string{"X-User-Ids", "Authorization", "Accept", "Host"} {
		if len(h.Peek(kept)) == 0 {
			t.Errorf("%s was removed", kept)
		}
	}
	if h.ConnectionClose() {
		t.Error("client's Connection: close must not reach the pooled upstream connection")
	}
}

func TestClientIP(t *testing.T) {
	trusted := Trusted{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")}
	cases := []struct{ peer, xff, want string }{
		{"203.0.113.9", "", "203.0.113.9"},
		{"203.0.113.9", "1.2.3.4", "203.0.113.9"},                // untrusted peer: XFF ignored
		{"10.1.1.1", "1.2.3.4", "1.2.3.4"},                       // one trusted hop
		{"10.1.1.1", "6.6.6.6, 1.2.3.4, 192.168.1.1", "1.2.3.4"}, // spoofed left part ignored
		{"10.1.1.1", "10.2.2.2, 10.3.3.3", "10.2.2.2"},           // all trusted: leftmost
		{"10.1.1.1", "garbage, 1.2.3.4", "1.2.3.4"},
		{"10.1.1.1", "1.2.3.4, garbage", "10.1.1.1"}, // malformed next to us: stop at the peer
		{"::ffff:10.1.1.1", "2001:db8::1", "2001:db8::1"},
		// An entry with a port is its address; a bad port is malformed.
		{"10.1.1.1", "6.6.6.6, 1.2.3.4:5678", "1.2.3.4"},
		{"10.1.1.1", "6.6.6.6, 1.2.3.4, 10.2.2.2:80", "1.2.3.4"},
		{"10.1.1.1", "[2001:db8::1]:443", "2001:db8::1"},
		{"10.1.1.1", "1.2.3.4:x", "10.1.1.1"},
	}
	for _, c := range cases {
		got := trusted.ClientIP(netip.MustParseAddr(c.peer), []byte(c.xff))
		if got.String() != c.want {
			t.Errorf("ClientIP(%s, %q) = %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}

func TestSetForwarded(t *testing.T) {
	trusted := Trusted{netip.MustParsePrefix("10.0.0.0/8")}
	h := parseHeader(t, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Proto: https\r\n\r\n")
	trusted.SetForwarded(h, netip.MustParseAddr("203.0.113.9"), false, sentOptional(h), nil)
	if got := string(h.Peek("X-Forwarded-For")); got != "203.0.113.9" {
		t.Errorf("untrusted peer: XFF %q", got)
	}
	if got := string(h.Peek("X-Forwarded-Proto")); got != "http" {
		t.Errorf("untrusted peer: proto %q", got)
	}
	if len(h.Peek("Forwarded")) > 0 {
		t.Error("untrusted Forwarded header kept")
	}
	h = parseHeader(t, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\r\n")
	trusted.SetForwarded(h, netip.MustParseAddr("10.0.0.7"), false, sentOptional(h), nil)
	if got := string(h.Peek("X-Forwarded-For")); got != "1.2.3.4, 10.0.0.7" {
		t.Errorf("trusted peer: XFF %q", got)
	}
	if got := string(h.Peek("X-Forwarded-Proto")); got != "https" {
		t.Errorf("trusted peer: proto %q", got)
	}
}

// SetForwarded looks for an untrusted peer's claims only when sentOptional
// saw one: every claim, in any letter case, must set optClaim.
func TestSentOptionalSeesEveryClaim(t *testing.T) {
	for _, name := range untrustedClaims {
		for _, spelt := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			h := parseHeader(t, "GET / HTTP/1.1\r\nHost: x\r\n"+spelt+": 6.6.6.6\r\n\r\n")
			if sentOptional(h)&optClaim == 0 {
				t.Errorf("%s: no optClaim", spelt)
			}
			Trusted{}.SetForwarded(h, netip.MustParseAddr("203.0.113.9"), false, sentOptional(h), nil)
			if v := h.Peek(name); len(v) > 0 {
				t.Errorf("%s from an untrusted peer reached the upstream: %q", spelt, v)
			}
		}
	}
	h := parseHeader(t, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Hostname: a\r\nX-Real-IPs: b\r\n\r\n")
	if sentOptional(h)&optClaim != 0 {
		t.Error("optClaim for names that are no claims")
	}
}

// classify's length mask passes over no name it would have classified:
// it agrees with the comparisons alone for every name it looks for, in any
// letter case and spelling, and for others of every length.
func TestClassifyLengthMask(t *testing.T) {
	plain := func(k []byte) fields {
		if isUserHeader(k) {
			return userBit
		}
		for i, name := range hopByHop {
			if asciiEqualFold(k, name) {
				return 1 << i
			}
		}
		return 0
	}
	names := []string{UserHeader, "x_user_id", "X_USER-ID", "Host", "Accept", "Authorization", "User-Agent", "Referer", "X-Request-ID"}
	for _, n := range hopByHop {
		names = append(names, n, strings.ToLower(n), strings.ToUpper(n))
	}
	for n := range 40 {
		names = append(names, strings.Repeat("a", n), "X-"+strings.Repeat("b", n))
	}
	for _, n := range names {
		if got, want := classify([]byte(n)), plain([]byte(n)); got != want {
			t.Errorf("classify(%q) = %b, want %b", n, got, want)
		}
	}
	if classify([]byte("keep-alive")) == 0 || classify([]byte("X_User_Id")) != userBit {
		t.Error("a hop-by-hop name or an X-User-ID spelling not classified")
	}
}

func TestSanitizeResponse(t *testing.T) {
	var r fasthttp.ResponseHeader
	if err := r.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: p\r\nKeep-Alive: timeout=1\r\nX-Ok: 1\r\nContent-Length: 0\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	SanitizeResponse(&r)
	if len(r.Peek("X-Private")) > 0 || len(r.Peek("Keep-Alive")) > 0 {
		t.Fatalf("hop-by-hop response header survived: %s", r.Header())
	}
	if !bytes.Equal(r.Peek("X-Ok"), []byte("1")) {
		t.Fatal("end-to-end header removed")
	}
}

// sentOptional may only skip a Peek that would have found nothing: for every
// spelling a client may send, a field Peek finds is in the set.
func TestSentOptionalAgreesWithPeek(t *testing.T) {
	names := map[string]optional{RequestIDHeader: optRequestID, "Traceparent": optTraceparent, "Tracestate": optTracestate,
		TimeoutHeader: optTimeout, "X-Release-Tag": optReleaseTag, "Idempotency-Key": optIdempotencyKey,
		"X-Forwarded-For": optForwardedFor, "X-Forwarded-Proto": optForwardedProto}
	for _, raw := range []string{
		"GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nx-request-id: abc\r\nTRACEPARENT: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n" +
			"tracestate: a=b\r\nx-request-timeout-ms: 50\r\nX-RELEASE-TAG: v2\r\nidempotency-key: k\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc\r\nIdempotency-Key: k\r\nCookie: release-tag=v2\r\nContent-Length: 0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\ncookie: a=b; release-tag=v2\r\nX-Request-Timeout-Ms:\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nX-Request-Id : spaced\r\nTrace-Parent: x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nx-forwarded-for: 1.2.3.4\r\nX-FORWARDED-PROTO: https\r\n\r\n",
	} {
		h := parseHeader(t, raw)
		sent := sentOptional(h)
		for name, bit := range names {
			if v := h.Peek(name); len(v) > 0 && sent&bit == 0 {
				t.Errorf("%q: Peek(%s) = %q, but the set lacks it", raw, name, v)
			}
		}
		if c := h.Cookie("release-tag"); len(c) > 0 && sent&optCookie == 0 {
			t.Errorf("%q: release-tag cookie %q, but the set lacks Cookie", raw, c)
		}
	}
	h := parseHeader(t, "GET /a HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\r\nTraceparent: t\r\nTracestate: s\r\n"+
		"X-Request-Timeout-Ms: 5\r\nX-Release-Tag: v\r\nCookie: c=d\r\nIdempotency-Key: k\r\n\r\n")
	if got, want := sentOptional(h), optRequestID|optTraceparent|optTracestate|optTimeout|optReleaseTag|optCookie|optIdempotencyKey; got != want {
		t.Errorf("all sent: set %b, want %b", got, want)
	}
	if got := sentOptional(parseHeader(t, "GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")); got != 0 {
		t.Errorf("none sent: set %b", got)
	}
}
