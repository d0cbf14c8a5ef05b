package integration

import (
	"io"
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
	const maxConns = 4
	g := cappedGateway(t, maxConns)
	// fillCap: the start's readiness client may hold a place for a moment,
	// so a silent client may be refused and the place freed since (seen:
	// 200 for 5 s with three silent clients held).
	a := fillCap(t, g.Addr, maxConns)
	if a.Header.Get("Retry-After") == "" {
		t.Fatalf("503 gateway-busy without Retry-After: %v", a.Header)
	}
}

// A TLS gateway (the fasthttp transport) closes a client over the cap
// without a byte: the plain-text 503 would reach a TLS client as a record
// that is no record ("first record does not look like a TLS handshake"),
// before any handshake (5b723463).
func TestTLSClientsOverTheCapClosedWithoutPlainText(t *testing.T) {
	if transport() == "loop" {
		t.Skip("the loop transport serves no TLS (TestTLSIsAtLeast12AndPrefers13)")
	}
	w := newWorld(t)
	w.startUpstream("a", "v1")
	certFile, keyFile, _ := selfSigned(t)
	const maxConns = 2
	g := w.startGateway("TLS_CERT_FILE="+certFile, "TLS_KEY_FILE="+keyFile, "GATEWAY_LOOP_MAX_CONNS=2", "GATEWAY_READ_TIMEOUT=1m")
	for range maxConns { // silent, held until the end of the test
		defer dialRaw(t, g.Addr).Close()
	}
	// As above, polled. A client within the cap reads nothing either (the
	// gateway waits for its ClientHello), so the refusal is told by the
	// close, and a client still waiting at its deadline is kept: it holds
	// the place it took.
	var got []byte
	eventually(t, 5*time.Second, "a client over the cap closed", func() bool {
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		got, err = io.ReadAll(c)
		if err != nil {
			t.Cleanup(func() { c.Close() })
			return false
		}
		c.Close()
		return true
	})
	if len(got) != 0 {
		t.Fatalf("a TLS client over the cap read %q before the close, want nothing", got)
	}
}
