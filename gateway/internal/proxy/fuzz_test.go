package proxy

import (
	"bufio"
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzSanitize feeds arbitrary header blocks through the parser and
// Sanitize: whatever a client sends, no X-User-ID lookalike, hop-by-hop
// field or field named by Connection may be left to forward.
func FuzzSanitize(f *testing.F) {
	f.Add("X-User-ID: a\r\nConnection: X-A, close\r\nX-A: 1\r\n")
	f.Add("x_user_id: a\r\nX-USER-ID: b\r\nKeep-Alive: 1\r\nTE: trailers\r\n")
	f.Add("Connection: ,,,\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n")
	f.Add("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n")
	f.Add("X_Forwarded_For: 6.6.6.6\r\nx-forwarded_proto: https\r\nX_Real_IP: 1\r\nX_Custom: kept\r\n")
	f.Fuzz(func(t *testing.T, block string) {
		raw := "GET /x HTTP/1.1\r\nHost: h\r\n" + block + "\r\n"
		var h fasthttp.RequestHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		var named [][]byte
		for tok := range bytes.SplitSeq(h.Peek("Connection"), []byte(",")) {
			if tok = bytes.TrimSpace(tok); len(tok) > 0 && !bytes.EqualFold(tok, []byte("close")) && !bytes.EqualFold(tok, []byte("keep-alive")) {
				named = append(named, append([]byte(nil), tok...))
			}
		}
		Sanitize(&h)
		for k := range h.All() {
			if isUserHeader(k) {
				t.Fatalf("user id lookalike %q survived %q", k, block)
			}
			if bytes.IndexByte(k, '_') >= 0 && slices.Contains(folded[:], strings.ToLower(strings.ReplaceAll(string(k), "_", "-"))) {
				t.Fatalf("'_' spelling %q of a gateway field survived %q", k, block)
			}
			for _, hop := range hopByHop {
				if bytes.EqualFold(k, []byte(hop)) {
					t.Fatalf("hop-by-hop %q survived %q", k, block)
				}
			}
			for _, n := range named {
				if bytes.EqualFold(k, n) && !bytes.EqualFold(k, []byte("Host")) {
					t.Fatalf("%q named by Connection survived %q", k, block)
				}
			}
		}
	})
}

// FuzzClientIP: the client address is the peer unless the peer is trusted;
// otherwise it is an entry of X-Forwarded-For with only trusted, well-formed
// hops to its right (a client cannot choose its address by prepending).
func FuzzClientIP(f *testing.F) {
	trusted := Trusted{netip.MustParsePrefix("10.0.0.0/8")}
	f.Add([]byte{10, 0, 0, 1}, "1.2.3.4, 10.0.0.2")
	f.Add([]byte{8, 8, 8, 8}, "1.2.3.4")
	f.Add([]byte{10, 9, 9, 9}, " ,, 10.1.1.1,garbage")
	f.Add([]byte{10, 0, 0, 1}, "6.6.6.6, 1.2.3.4:80, [10::1]:8080")
	f.Fuzz(func(t *testing.T, peerBytes []byte, xff string) {
		if len(peerBytes) != 4 {
			return
		}
		peer := netip.AddrFrom4([4]byte(peerBytes))
		got := trusted.ClientIP(peer, []byte(xff))
		if !got.IsValid() {
			t.Fatalf("invalid client ip for %v %q", peer, xff)
		}
		if got == peer {
			return
		}
		if !trusted.Contains(peer) {
			t.Fatalf("untrusted peer %v but client %v from %q", peer, got, xff)
		}
		items := strings.Split(xff, ",")
		for i := len(items) - 1; i >= 0; i-- {
			item := strings.TrimSpace(items[i])
			a, err := netip.ParseAddr(item)
			if err != nil {
				// An address with a port counts as the address.
				ap, perr := netip.ParseAddrPort(item)
				if perr != nil {
					t.Fatalf("client %v lies left of malformed hop %q in %q", got, items[i], xff)
				}
				a = ap.Addr()
			}
			if a.Unmap() == got {
				return
			}
			if !trusted.Contains(a.Unmap()) {
				t.Fatalf("client %v lies left of untrusted hop %v in %q", got, a, xff)
			}
		}
		t.Fatalf("client %v is not in %q", got, xff)
	})
}

// FuzzProblem: whatever the request target, the problem document is JSON.
func FuzzProblem(f *testing.F) {
	f.Add("/a\"b\\c\x00\xff<script>")
	f.Fuzz(func(t *testing.T, uri string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetRequestURI(uri)
		writeProblem(&ctx.Response, ctx.Request.Header.RequestURI(), 400, "bad-path", "detail \"quoted\"")
		if !jsonValid(ctx.Response.Body()) {
			t.Fatalf("invalid JSON for %q: %s", uri, ctx.Response.Body())
		}
	})
}

// FuzzAbsoluteForm: whatever the request target, an accepted absolute form
// is an http(s) scheme, "://", a non-empty authority made only of host and
// port characters (no userinfo, no path or query separators, no space or
// control byte: it becomes the Host sent upstream) and a rest that starts a
// path or a query; the three pieces are the target again.
func FuzzAbsoluteForm(f *testing.F) {
	for _, s := range []string{"http://gw/api/v1/orders?x=1", "HTTPS://[::1]:8443", "http://u@evil/x", "http://",
		"/api?next=http://evil/", "ftp://gw/", "http://gw\r\nX: y/", "http://gw:80?q", "http:///x",
		"http://gw/api?q=1#frag", "http://gw#frag", "http://Gw.Example:8080/x", "gw:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		authority, rest, ok := AbsoluteForm([]byte(target))
		if !ok {
			return
		}
		scheme, after, found := strings.Cut(target, "://")
		if !found || !(strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
			t.Fatalf("%q accepted with scheme %q", target, scheme)
		}
		if after != string(authority)+string(rest) {
			t.Fatalf("%q split into %q and %q", target, authority, rest)
		}
		if len(authority) == 0 || bytes.ContainsAny(authority, "@/?# \t\r\n\x00\x7f") {
			t.Fatalf("%q gave authority %q", target, authority)
		}
		if len(rest) > 0 && rest[0] != '/' && rest[0] != '?' {
			t.Fatalf("%q gave rest %q", target, rest)
		}
	})
}

// FuzzValidHost: a Host the chain accepts is one the fasthttp server's URI
// parser accepts too, so that no Host passes on the event loop that the
// fasthttp transport refuses; and it carries no userinfo, path or space.
func FuzzValidHost(f *testing.F) {
	for _, s := range []string{"gw", "Api.Example.COM:8080", "[::1]:8080", "[fe80::1%25en0]", "10.0.0.1", "gw:", ":80", "a b",
		"user@gw", "gw/x", "gw:8o", "a:1:2", "[::1", "[gw]", "g%41w", "g%C3%A9", "gw\x00", "[::ffff:1.2.3.4]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !validHost([]byte(host)) {
			return
		}
		var u fasthttp.URI
		if err := u.Parse([]byte(host), []byte("/")); err != nil {
			t.Fatalf("%q accepted, but fasthttp's URI parser refuses it: %v", host, err)
		}
		if host == "" || strings.ContainsAny(host, "@/?# \t\r\n\x00\x7f") {
			t.Fatalf("%q accepted", host)
		}
	})
}
