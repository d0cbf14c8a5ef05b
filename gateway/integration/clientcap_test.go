package integration

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// Both transports hold at most GATEWAY_LOOP_MAX_CONNS client connections
// and answer one more 503 gateway-busy (problem+json, Retry-After) before
// closing it. The fasthttp transport had no cap of its own below
// fasthttp's default Concurrency (262,144): silent clients held a
// goroutine and a 16 KiB read buffer each until their read timeout, and a
// client over the cap waited silently like the rest.
func TestClientsOverTheCapGetGatewayBusy(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	const maxConns = 4
	g := rawGateway(w, up, "GATEWAY_LOOP_MAX_CONNS=4", "GATEWAY_READ_TIMEOUT=1m")
	for range maxConns { // silent, held until the end of the test
		defer dialRaw(t, g.Addr).Close()
	}
	// The start's readiness client may still hold a place for a moment:
	// polled, not assumed.
	var a *rawAnswer
	eventually(t, 5*time.Second, "a client over the cap answered 503 gateway-busy", func() bool {
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"))
		a, err = readAnswer(bufio.NewReader(c))
		return err == nil && a.Status == 503 && a.problem() == "gateway-busy"
	})
	if a.Header.Get("Retry-After") == "" {
		t.Fatalf("503 gateway-busy without Retry-After: %v", a.Header)
	}
}
