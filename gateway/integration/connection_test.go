package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConnectionCannotStripWhatTheGatewayAdds: a client's Connection field
// names fields to drop at this hop (RFC 9110 §7.6.1), the client's own. It
// must not take away what the gateway adds for the upstream: the request id,
// the verified user, the forwarded chain and the time left.
func TestConnectionCannotStripWhatTheGatewayAdds(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway()
	sub := "conn-user-" + randHex(4)
	auth := map[string]string{"Authorization": "Bearer " + w.token(sub)}
	eventually(t, 2*time.Second, "routed", func() bool { return w.do(g, "GET", "/api/v1/orders", auth, nil).Status == 200 })

	added := []string{"X-Request-ID", "X-User-ID", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Timeout-Ms"}
	for _, named := range append([]string{strings.Join(added, ", ")}, added...) {
		hdr := map[string]string{"Authorization": auth["Authorization"], "Connection": named}
		r := w.do(g, "GET", "/api/v1/orders", hdr, nil)
		if r.Status != 200 {
			t.Fatalf("Connection: %s: status %d %s", named, r.Status, r.Body)
		}
		got := http.Header(r.Echo.Header)
		want := map[string]string{
			"X-Request-ID": r.Header.Get("X-Request-ID"), "X-User-ID": sub,
			"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
		}
		for _, name := range added {
			v := got.Get(name)
			if v == "" || (want[name] != "" && v != want[name]) {
				t.Errorf("Connection: %s: upstream got %s %q, want %q (set by the gateway)", named, name, v, want[name])
			}
		}
	}
}

// A Connection list may name any field (RFC 9110 §7.6.1), but not take away
// what the gateway forwards the request by: its Host (the upstream got the
// endpoint's address instead), its length, or the forwarded chain and
// protocol a trusted proxy in front wrote, which the gateway reads after
// the drop: named, the upstream saw that proxy as the client. Go's
// ReverseProxy keeps Host and the length out of its header map and reads
// the prior X-Forwarded-For from the inbound request; nginx strips nothing
// Connection names. A field the client alone cares for still goes.
func TestConnectionCannotStripWhatTheGatewayNeeds(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	g := rawGateway(w, up, "GATEWAY_TRUSTED_PROXIES=127.0.0.1/32")
	head := "Host: Gw.Example\r\nAuthorization: Bearer " + w.token("conn-needs") + "\r\nX-Forwarded-For: 203.0.113.7\r\n" +
		"X-Forwarded-Proto: https\r\nX-Mine: 1\r\nConnection: Host, Content-Length, X-Forwarded-For, X-Forwarded-Proto, X-Mine\r\n"
	a := exchange(t, g.Addr, "POST /api/v1/orders/echo HTTP/1.1\r\n"+head+"Content-Length: 5\r\n\r\nhello", 1)[0]
	if a.Status != 200 || a.Body != "host=Gw.Example cl=5 te=[] body=hello" {
		t.Fatalf("Host and Content-Length named: %d %q", a.Status, a.Body)
	}
	for name, want := range map[string]string{"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Mine": ""} {
		a := exchange(t, g.Addr, "GET /api/v1/orders/header?name="+name+" HTTP/1.1\r\n"+head+"\r\n", 1)[0]
		if a.Status != 200 || a.Body != name+"="+want {
			t.Errorf("%s named: %d %q, want %q", name, a.Status, a.Body, want)
		}
	}
}

// The forwarded fields pinned against a Connection list (the test above)
// are a trusted proxy's to keep, not a client's: from any other peer, one
// named in Connection is still replaced by what the gateway saw, as when
// none names it. Pinned, they outlive the drop until the forwarding step.
func TestConnectionCannotKeepAClientsForwardedClaims(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	g := rawGateway(w, up) // no trusted proxies
	head := "Host: gw\r\nAuthorization: Bearer " + w.token("conn-claims") + "\r\nX-Forwarded-For: 203.0.113.7\r\n" +
		"X-Forwarded-Proto: https\r\nConnection: X-Forwarded-For, X-Forwarded-Proto\r\n"
	for name, want := range map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"} {
		a := exchange(t, g.Addr, "GET /api/v1/orders/header?name="+name+" HTTP/1.1\r\n"+head+"\r\n", 1)[0]
		if a.Status != 200 || a.Body != name+"="+want {
			t.Errorf("%s named by an untrusted client: %d %q, want %q", name, a.Status, a.Body, want)
		}
	}
}
