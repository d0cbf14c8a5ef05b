package proxy

import (
	"context"
	"net/netip"
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
