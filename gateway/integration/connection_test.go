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
