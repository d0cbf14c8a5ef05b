package agent

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestTCPLifecycleIPv6: the connections of a target serving and dialling over IPv6 are counted as over IPv4
// (TestTCPLifecycle): accepted_sock takes AF_INET6 TCP sockets too.
func TestTCPLifecycleIPv6(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	bin := buildTarget(t, false)
	a := newAgent(t, bin)
	tg := startTarget(t, bin, "HTTP_ADDR=[::1]:0")
	a.Scan()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	tg.get(t, c, "GET", "/stats")
	base := tcpOf(t, a, tg.pid)

	const dials, accepts = 7, 5
	tg.get(t, c, "GET", fmt.Sprintf("/dial?n=%d&addr=%s", dials, url.QueryEscape(ln.Addr().String())))
	for range accepts {
		conn, err := net.Dial("tcp", strings.TrimPrefix(tg.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	want := TCPStats{Active: dials, Passive: accepts, Closed: dials + accepts}
	eventually(t, func() (bool, string) {
		got := sub(tcpOf(t, a, tg.pid), base)
		got.Retransmits = 0
		return got == want, fmt.Sprintf("tcp over IPv6 for pid %d: got %+v, want %+v", tg.pid, got, want)
	})
}
