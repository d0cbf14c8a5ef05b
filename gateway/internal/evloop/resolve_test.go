package evloop

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstreamtest"
)

// answerName makes the default resolver answer A queries for name (and
// nothing else) with *ip as it is at the time of the query, through an
// in-memory DNS server, until the test ends.
func answerName(t *testing.T, name string, ip *atomic.Pointer[netip.Addr]) {
	t.Helper()
	r := net.DefaultResolver
	preferGo, dial := r.PreferGo, r.Dial
	r.PreferGo = true
	r.Dial = func(context.Context, string, string) (net.Conn, error) {
		c, s := net.Pipe() // not a PacketConn: the resolver frames as over TCP
		go serveDNS(s, name, ip)
		return c, nil
	}
	t.Cleanup(func() { r.PreferGo, r.Dial = preferGo, dial })
}

// serveDNS answers one query on c: name's A record from ip, no record of
// any other type or name.
func serveDNS(c net.Conn, name string, ip *atomic.Pointer[netip.Addr]) {
	defer c.Close()
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return
	}
	q := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, q); err != nil || len(q) < 12 {
		return
	}
	var qname []string
	end := 12
	for end < len(q) && q[end] != 0 {
		qname = append(qname, string(q[end+1:end+1+int(q[end])]))
		end += int(q[end]) + 1
	}
	end++ // the root label
	qtype := binary.BigEndian.Uint16(q[end:])
	end += 4 // type, class
	found := qtype == 1 && strings.EqualFold(strings.Join(qname, "."), strings.TrimSuffix(name, "."))
	resp := append([]byte(nil), q[:2]...) // the query's id
	resp = append(resp, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0)
	if found {
		resp[7] = 1 // one answer
	}
	resp = append(resp, q[12:end]...)
	if found {
		a := ip.Load().As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, a[0], a[1], a[2], a[3])
	}
	binary.BigEndian.PutUint16(l[:], uint16(len(resp)))
	_, _ = c.Write(append(l[:], resp...))
}

// An endpoint registered by host name (compose's ADVERTISE_ADDR=order:8082)
// is dialled at the address the name has when the loop dials, as the
// fasthttp transport's pools do. The loop resolved it once, on the loop,
// and kept that address for good: once the instance came back at another
// address under the same name (a compose service recreated), every request
// to it failed until the gateway restarted.
func TestHostNameEndpointIsResolvedAtEachDial(t *testing.T) {
	const name = "order.shanhai.test"
	first, second := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	var ip atomic.Pointer[netip.Addr]
	ip.Store(&first)
	answerName(t, name, &ip)

	lnA, err := net.Listen("tcp", first.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(lnA.Addr().String())
	serve := func(ln net.Listener, who string) chan net.Conn {
		conns := make(chan net.Conn, 16)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns <- c
				go func() {
					br := bufio.NewReader(c)
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							_ = c.Close()
							return
						}
						_, _ = io.Copy(io.Discard, req.Body)
						upstreamtest.OK(c, who)
					}
				}()
			}
		}()
		return conns
	}
	connsA := serve(lnA, "a")
	addr, _, _ := startServerWith(t, proxy.Options{MaxAttempts: 1}, Options{MaxBodyBytes: 1 << 10, Loops: 1},
		staticRes{"order": {{ID: "a", Addr: net.JoinHostPort(name, port), Version: "v1"}}})
	get := "GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n"
	if r := roundTrips(t, addr, get, 1)[0]; r.StatusCode() != 200 || string(r.Body()) != "a" {
		t.Fatalf("first instance: %d %q", r.StatusCode(), r.Body())
	}

	// The instance goes, and comes back under the same name elsewhere.
	_ = lnA.Close()
	for len(connsA) > 0 {
		_ = (<-connsA).Close()
	}
	lnB, err := net.Listen("tcp", net.JoinHostPort(second.String(), port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lnB.Close() })
	serve(lnB, "b")
	ip.Store(&second)

	var last string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r := roundTrips(t, addr, get, 1)[0]
		if r.StatusCode() == 200 && string(r.Body()) == "b" {
			return
		}
		last = r.String()
	}
	t.Fatalf("the name's new address was never dialled; last answer:\n%s", last)
}
