package integration

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A gateway holding GATEWAY_LOOP_MAX_CONNS clients answers one more
// 503 gateway-busy, a probe on its public port included: liveness asked
// there restarted a gateway that was full, dropping every client it held.
// Liveness is asked on the admin listener, which the cap does not count:
// 200 while the loops run, full or not (a stuck loop fails it: evloop's
// TestAliveWhenFullNotWhenWedged). Before, the admin listener had no
// /healthz (404).
func TestLivenessOnTheAdminListenerWhenFull(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	const maxConns = 4
	g := rawGateway(w, up, "GATEWAY_LOOP_MAX_CONNS=4", "GATEWAY_READ_TIMEOUT=1m")
	if body := adminGet(t, g, "/healthz"); body != "ok" {
		t.Fatalf("admin /healthz: %q, want ok", body)
	}
	if transport() != "loop" {
		return // the cap is the event loop's: the fasthttp transport has none to fill
	}
	// Silent clients, as many as the cap: with the start's readiness
	// client, if still open, one of these is refused; either way the cap
	// is full when the probe comes.
	for range maxConns {
		c := dialRaw(t, g.Addr)
		defer c.Close()
	}
	eventually(t, 5*time.Second, "the public port refusing a probe with the cap full", func() bool {
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gw\r\nUser-Agent: kube-probe/1.32\r\n\r\n"))
		a, err := readAnswer(bufio.NewReader(c))
		return err == nil && a.Status == http.StatusServiceUnavailable && strings.Contains(a.Body, "gateway-busy")
	})
	if body := adminGet(t, g, "/healthz"); body != "ok" {
		t.Fatalf("admin /healthz with the cap full: %q, want ok", body)
	}
}
