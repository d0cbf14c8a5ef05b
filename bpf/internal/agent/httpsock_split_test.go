package agent

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A request whose first bytes come in a read of fewer than 8 ("GE", "GET", "GET /", then the rest) is counted by
// the socket probe (found by review: recv_length read only the first byte of such a read and carried only one-byte
// reads, so none of these was seen). Each request is written in the pieces given, 30 ms apart so that the server
// reads them apart; if it ever read two pieces at once, the request would still have to be counted.
func TestHTTPSocketRequestSplitInShortReads(t *testing.T) {
	t.Parallel()
	bin := ownCopy(t, buildTarget(t, false))
	a := newSocketAgent(t, bin)
	tg := startTarget(t, bin)
	a.Scan()
	addr := strings.TrimPrefix(tg.base, "http://")
	const rest = " /work?status=202 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	for _, pieces := range [][]string{
		{"G", "ET" + rest},
		{"GE", "T" + rest},
		{"GET", rest},
		{"GET ", rest[1:]},
		{"GET /", rest[2:]},
		{"GET /wo", rest[4:]},
		{"G", "E", "T", rest},
		{"GE", "T /", rest[2:]},
		{"DELETE", rest},
		{"OPTIONS", rest},
		{"OPTIONS ", rest[1:]},
		{"PATCH", " ", rest[1:]},
		{"GET" + rest}, // whole
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetNoDelay(true)
		for i, p := range pieces {
			if i > 0 {
				time.Sleep(30 * time.Millisecond)
			}
			if _, err := c.Write([]byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", pieces, err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("%q: status %d", pieces, resp.StatusCode)
		}
	}
	want := fmt.Sprint(map[string]uint64{"GET 202": 9, "DELETE 202": 1, "OPTIONS 202": 2, "PATCH 202": 1})
	eventually(t, func() (bool, string) { return serverCountsAre(a, tg.pid, want) })
}

// Short reads that cannot begin a request, and one that could but is followed by something else, start nothing and
// do not spoil the request read after them on the same connection.
func TestHTTPSocketShortReadsThatBeginNoRequest(t *testing.T) {
	t.Parallel()
	bin := ownCopy(t, buildTarget(t, false))
	a := newSocketAgent(t, bin)
	tg := startTarget(t, bin)
	a.Scan()
	addr := strings.TrimPrefix(tg.base, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	br := bufio.NewReader(c)
	// Short bodies read alone: "PU" could begin a request (it is carried), "GETX" and "XGET /a" cannot. Each is
	// followed by a request that must be counted from its own first bytes.
	for _, body := range []string{"PU", "GETX", "XGET /a", "PU"} {
		for i, p := range []string{
			fmt.Sprintf("POST /work?status=201&read=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)),
			body,
		} {
			if i > 0 {
				time.Sleep(30 * time.Millisecond)
			}
			if _, err := c.Write([]byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	time.Sleep(30 * time.Millisecond)
	if _, err := c.Write([]byte("GET /work?status=203 HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := fmt.Sprint(map[string]uint64{"POST 201": 4, "GET 203": 1})
	eventually(t, func() (bool, string) { return serverCountsAre(a, tg.pid, want) })
}
