package integration

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// A gateway holding GATEWAY_LOOP_MAX_CONNS clients answers one more
// 503 gateway-busy, a probe on its public port included: liveness asked
// there restarted a gateway that was full, dropping every client it held.
// Liveness is asked on the admin listener, which the cap does not count:
// 200 while the loops run, full or not (a stuck loop fails it: evloop's
// TestAliveWhenFullNotWhenWedged). Both transports hold the cap, so the
// cap is filled on both. Before, the admin listener had no /healthz (404);
// and the cap was filled only when GATEWAY_TRANSPORT=loop was set by hand,
// which neither of a plain run's two passes (the default, then fasthttp)
// sets, so no run filled it.
func TestLivenessOnTheAdminListenerWhenFull(t *testing.T) {
	const maxConns = 4
	g := cappedGateway(t, maxConns)
	if body := adminGet(t, g, "/healthz"); body != "ok" {
		t.Fatalf("admin /healthz: %q, want ok", body)
	}
	fillCap(t, g.Addr, maxConns)
	if body := adminGet(t, g, "/healthz"); body != "ok" {
		t.Fatalf("admin /healthz with the cap full: %q, want ok", body)
	}
}

// fillCap holds maxConns silent clients on the gateway at addr (its
// GATEWAY_LOOP_MAX_CONNS), until the test ends, and returns the answer to
// the first probe it refuses, as a kubelet's would be (503 gateway-busy).
// The start's readiness client may still hold a place, so one of the
// silent clients may be refused and closed, and the place is free again
// once that client goes: a probe admitted then is answered and kept open
// (keep-alive), holding the place, and the next probe asks again.
func fillCap(t *testing.T, addr string, maxConns int) *rawAnswer {
	t.Helper()
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range maxConns {
		held = append(held, dialRaw(t, addr))
	}
	var refused *rawAnswer
	eventually(t, 5*time.Second, "the public port refusing a probe with the cap full", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gw\r\nUser-Agent: kube-probe/1.32\r\n\r\n"))
		a, err := readAnswer(bufio.NewReader(c))
		if err == nil && a.Status == http.StatusServiceUnavailable && a.problem() == "gateway-busy" {
			c.Close()
			refused = a
			return true
		}
		held = append(held, c)
		return false
	})
	return refused
}

// cappedGateway starts a gateway that holds at most maxConns clients,
// whose silent clients are not cut off before the test ends (a read
// timeout of a minute).
func cappedGateway(t *testing.T, maxConns int) *gatewayProc {
	t.Helper()
	w := newWorld(t)
	return rawGateway(w, startRawUpstream(t), "GATEWAY_LOOP_MAX_CONNS="+strconv.Itoa(maxConns), "GATEWAY_READ_TIMEOUT=1m")
}
