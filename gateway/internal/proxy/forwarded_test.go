package proxy

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
)

// keyRecorder is a limiter that allows everything and remembers the keys.
type keyRecorder struct {
	mu   sync.Mutex
	keys []string
}

func (k *keyRecorder) Allow(_ context.Context, key []byte) (quota.Decision, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append(k.keys, string(key))
	return quota.Decision{Allowed: true}, nil
}

// forwardedOnBoth runs raw from peer 203.0.113.5 through p on both
// transports and returns, per transport, the per-IP limit key and the
// X-Forwarded-For and X-Forwarded-Proto lines the upstream gets: on
// fasthttp as the upstream received them, on the event loop as Begin left
// the request it writes upstream as is.
func forwardedOnBoth(t *testing.T, trusted Trusted, raw string) map[string][3][]string {
	t.Helper()
	lim := &keyRecorder{}
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{IPLimit: lim, Trusted: trusted}, up)
	lines := func(h *fasthttp.RequestHeader) (xff, xfp []string) {
		for k, v := range h.All() {
			switch string(k) {
			case "X-Forwarded-For":
				xff = append(xff, string(v))
			case "X-Forwarded-Proto":
				xfp = append(xfp, string(v))
			}
		}
		return xff, xfp
	}
	out := map[string][3][]string{}
	if ctx := serve(p, raw); ctx.Response.StatusCode() != 200 {
		t.Fatalf("fasthttp: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	xff, xfp := lines(up.last.Load())
	out["fasthttp"] = [3][]string{lim.keys, xff, xfp}

	lim.keys = nil
	x, s := beginOnLoop(t, p, raw)
	if s != Send {
		t.Fatalf("event loop: step %v, %d %s", s, x.Resp.StatusCode(), x.Resp.Body())
	}
	xff, xfp = lines(&x.Req.Header)
	out["event loop"] = [3][]string{lim.keys, xff, xfp}
	return out
}

// X-Forwarded-For and X-Forwarded-Proto sent in more than one field line:
// from an untrusted peer every line is replaced by the gateway's (the
// second went upstream beside it); behind a trusted proxy that appends its
// own line the chain is all lines in order (ClientIP read only the first,
// client-forged, line, so the client chose its per-IP limit key). An entry
// with a port counts as its address.
func TestForwardedFieldLines(t *testing.T) {
	proxyNet := Trusted{netip.MustParsePrefix("203.0.113.0/24")}
	const get = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n"
	for _, c := range []struct {
		name     string
		trusted  Trusted
		fields   string
		key      string
		xff, xfp string
	}{
		{"untrusted peer, two lines each", nil,
			"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 7.7.7.7\r\nx-forwarded-proto: https\r\n",
			"203.0.113.5", "203.0.113.5", "http"},
		{"trusted proxy appends its own line", proxyNet,
			"X-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\nX-Forwarded-For: 198.51.100.7\r\n",
			"198.51.100.7", "6.6.6.6, 198.51.100.7, 203.0.113.5", "http"},
		{"trusted proxy, three lines, one with two entries", proxyNet,
			"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 5.5.5.5, 198.51.100.7\r\nX-Forwarded-For: 203.0.113.9\r\n",
			"198.51.100.7", "6.6.6.6, 5.5.5.5, 198.51.100.7, 203.0.113.9, 203.0.113.5", "http"},
		{"trusted proxy, its proto line last", proxyNet,
			"X-Forwarded-Proto: http\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\n",
			"198.51.100.7", "198.51.100.7, 203.0.113.5", "https"},
		{"trusted proxy writes a port", proxyNet,
			"X-Forwarded-For: 6.6.6.6, 198.51.100.7:5678\r\nX-Forwarded-Proto: https\r\n",
			"198.51.100.7", "6.6.6.6, 198.51.100.7:5678, 203.0.113.5", "https"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for transport, got := range forwardedOnBoth(t, c.trusted, get+c.fields+"\r\n") {
				keys, xff, xfp := got[0], got[1], got[2]
				if len(keys) != 1 || keys[0] != c.key {
					t.Errorf("%s: per-IP limit key %q, want %s", transport, keys, c.key)
				}
				if len(xff) != 1 || xff[0] != c.xff || len(xfp) != 1 || xfp[0] != c.xfp {
					t.Errorf("%s: upstream gets X-Forwarded-For %q, X-Forwarded-Proto %q; want [%s] and [%s]", transport, xff, xfp, c.xff, c.xfp)
				}
			}
		})
	}
}

// One IPv6 client commonly owns a whole /64 (SLAAC, privacy addresses; a
// host's provider hands out at least that much), so the per-IP and login
// limits key an IPv6 client by its /64: keyed by the /128, each new address
// of that /64 came with a fresh bucket. An IPv4-mapped address is its IPv4
// one. The upstream still gets the client's whole address.
func TestIPv6ClientsAreLimitedPerSlash64(t *testing.T) {
	proxyNet := Trusted{netip.MustParsePrefix("203.0.113.0/24")}
	const get = "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n"
	for _, c := range []struct{ client, key string }{
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::7]:443", "2001:db8:1:3::/64"},
		{"::ffff:198.51.100.7", "198.51.100.7"},
		{"198.51.100.7", "198.51.100.7"},
	} {
		for transport, got := range forwardedOnBoth(t, proxyNet, get+"X-Forwarded-For: "+c.client+"\r\n\r\n") {
			keys, xff := got[0], got[1]
			if len(keys) != 1 || keys[0] != c.key {
				t.Errorf("%s: client %s has per-IP limit key %q, want %s", transport, c.client, keys, c.key)
			}
			if want := c.client + ", 203.0.113.5"; len(xff) != 1 || xff[0] != want {
				t.Errorf("%s: upstream gets X-Forwarded-For %q, want [%s]", transport, xff, want)
			}
		}
	}
}

// A peer's own address is keyed the same way as one a trusted proxy names.
func TestLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"2001:db8::1":             "2001:db8::/64",
		"fe80::1%eth0":            "fe80::/64",
		"::ffff:192.0.2.1":        "192.0.2.1",
		"192.0.2.1":               "192.0.2.1",
		"::1":                     "::/64",
		"2001:db8:ffff:ffff:1::1": "2001:db8:ffff:ffff::/64",
	} {
		if got := string(appendLimitKey(nil, netip.MustParseAddr(in))); got != want {
			t.Errorf("%s: key %q, want %q", in, got, want)
		}
	}
}

// Spellings with '_' for '-' of the fields the gateway sets or only a
// trusted proxy may send never reach an upstream. CGI, PHP and WSGI servers
// fold both spellings into one variable (HTTP_X_FORWARDED_FOR), where the
// client's X_Forwarded_For could stand for, or beside, the gateway's
// X-Forwarded-For: a forged client address or protocol behind the
// gateway's back. Other names with underscores go on.
func TestUnderscoreSpellingsOfGatewayFieldsAreDropped(t *testing.T) {
	spoof := []string{"X_Forwarded_For: 6.6.6.6", "x_forwarded_for: 6.6.6.7", "X-Forwarded_For: 6.6.6.8",
		"X_Forwarded_Proto: https", "X_Forwarded-Host: evil.example", "X_Real_IP: 6.6.6.9",
		"X_Request_Timeout_Ms: 999999", "X_Request_ID: forged"}
	raw := "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n" + strings.Join(spoof, "\r\n") + "\r\nX_Custom_Thing: kept\r\n\r\n"
	for _, trusted := range []Trusted{nil, {netip.MustParsePrefix("203.0.113.0/24")}} {
		up := startUpstream(t)
		p, _ := newTestProxy(t, Options{Trusted: trusted}, up)
		ctx := serve(p, raw)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("fasthttp: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		x, s := beginOnLoop(t, p, raw)
		if s != Send {
			t.Fatalf("event loop: step %v, %d %s", s, x.Resp.StatusCode(), x.Resp.Body())
		}
		for transport, h := range map[string]*fasthttp.RequestHeader{"fasthttp": up.last.Load(), "event loop": &x.Req.Header} {
			var left []string
			kept := false
			for k := range h.All() {
				if strings.Contains(string(k), "_") && !strings.EqualFold(string(k), "X_Custom_Thing") {
					left = append(left, string(k))
				}
				kept = kept || strings.EqualFold(string(k), "X_Custom_Thing")
			}
			if len(left) > 0 || !kept {
				t.Errorf("%s (trusted %v): upstream gets %q (X_Custom_Thing kept: %v)", transport, trusted, left, kept)
			}
		}
	}
}
