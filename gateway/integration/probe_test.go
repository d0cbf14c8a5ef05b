package integration

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
)

// The clients that probe /healthz and /readyz on the public port, as they
// write their requests, are answered there, outside the chain, and probes
// and ordinary requests keep their connections: the checks that send a
// refused or ambiguous head to the chain, and close after it (AdminPath's
// version, AdminFramed, Begin's framing), must catch none of these. A probe
// caught there is routed (404): a kubelet, compose or a load balancer takes
// the gateway out. A connection closed after an ordinary request costs a
// new one per request (gateway/bench runs keep-alive GETs).
func TestProbesAndKeepAlive(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	g := rawGateway(w, up)
	t.Run("probes", func(t *testing.T) { probesAreAnswered(t, g, up) })
	t.Run("keep-alive", func(t *testing.T) { connectionsAreKept(t, g) })
}

// probesAreAnswered: each probe as its client writes it gets 200 from the
// gateway itself, none reaching the upstream.
func probesAreAnswered(t *testing.T, g *gatewayProc, up *rawUpstream) {
	port := g.Addr[strings.LastIndexByte(g.Addr, ':')+1:]
	for _, tc := range []struct{ name, head, body string }{
		{"kubelet httpGet", "GET /readyz HTTP/1.1\r\nHost: 10.244.0.7:" + port + "\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n\r\n", "ready"},
		{"kubelet httpGet, IPv6 pod", "GET /healthz HTTP/1.1\r\nHost: [fd00:10:244::7]:" + port + "\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n\r\n", "ok"},
		{"HTTP/1.0 load balancer, no Host", "GET /healthz HTTP/1.0\r\n\r\n", "ok"},
		{"HTTP/1.0 load balancer, Host", "GET /readyz HTTP/1.0\r\nHost: 172.31.240.10\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n", "ready"},
		{"curl", "GET /healthz HTTP/1.1\r\nHost: localhost:" + port + "\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n", "ok"},
		{"compose service name", "GET /readyz HTTP/1.1\r\nHost: shanhai_gateway_1:" + port + "\r\n\r\n", "ready"},
		{"absolute form", "GET http://gateway." + "shanhai.svc:" + port + "/healthz HTTP/1.1\r\nHost: gateway.shanhai.svc:" + port + "\r\n\r\n", "ok"},
		{"HEAD", "HEAD /healthz HTTP/1.1\r\nHost: gw\r\n\r\n", ""},
		{"POST with a chunked empty body", "POST /healthz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, g.Addr)
			defer c.Close()
			writeSplit(t, c, tc.head)
			br := bufio.NewReader(c)
			var a *rawAnswer
			var err error
			if strings.HasPrefix(tc.head, "HEAD") {
				resp, rerr := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
				if rerr == nil {
					resp.Body.Close()
					a = &rawAnswer{Status: resp.StatusCode, Header: resp.Header}
				}
				err = rerr
			} else {
				a, err = readAnswer(br)
			}
			if err != nil || a.Status != http.StatusOK || a.Body != tc.body {
				t.Fatalf("answer %+v %v, want 200 %q", a, err, tc.body)
			}
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d probes", n)
	}
}

// connectionsAreKept: pipelined probes (GET, HEAD, HTTP/1.0 keep-alive) and
// proxied GETs are answered on one connection, which stays open for the
// next; Go's client (compose's healthprobe, a load generator) reuses its
// connection for every probe and request; a POST with Expect: 100-continue
// keeps it too.
func connectionsAreKept(t *testing.T, g *gatewayProc) {
	t.Run("pipelined", func(t *testing.T) {
		c := dialRaw(t, g.Addr)
		defer c.Close()
		writeSplit(t, c, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"+
			"HEAD /readyz HTTP/1.1\r\nHost: gw\r\n\r\n"+
			get("p1")+
			"GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"+
			get("p2"))
		br := bufio.NewReader(c)
		for i, method := range []string{"GET", "HEAD", "GET", "GET", "GET"} {
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("answer %d: %v", i+1, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Close {
				t.Fatalf("answer %d: %d, close %v; want 200 on a kept connection", i+1, resp.StatusCode, resp.Close)
			}
		}
		writeSplit(t, c, get("p3"))
		if a, err := readAnswer(br); err != nil || a.Status != http.StatusOK {
			t.Fatalf("after the pipeline: %+v %v", a, err)
		}
	})
	t.Run("net/http client", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer client.CloseIdleConnections()
		reused := 0
		for i, path := range []string{"/healthz", "/readyz", "/api/v1/products/n1", "/healthz", "/api/v1/products/n2"} {
			trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
				if ci.Reused {
					reused++
				}
			}}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, g.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%d %s: %v", i, path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d", path, resp.StatusCode)
			}
		}
		if reused != 4 {
			t.Fatalf("the client reused its connection %d times of 4", reused)
		}
	})
	// Expect: 100-continue: the 100, the answer once the body is sent, and
	// the connection goes on (the products route wants a token for a POST).
	for _, tc := range []struct {
		path   string
		status int
	}{{"/healthz", http.StatusOK}, {"/api/v1/products/e1", http.StatusUnauthorized}} {
		t.Run("100-continue "+tc.path, func(t *testing.T) {
			c := dialRaw(t, g.Addr)
			defer c.Close()
			writeSplit(t, c, "POST "+tc.path+" HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
			br := bufio.NewReader(c)
			if a, err := readAnswer(br); err != nil || a.Status != http.StatusContinue {
				t.Fatalf("first answer %+v %v, want 100", a, err)
			}
			writeSplit(t, c, "{}")
			if a, err := readAnswer(br); err != nil || a.Status != tc.status {
				t.Fatalf("answer %+v %v, want %d", a, err, tc.status)
			}
			writeSplit(t, c, get("after"))
			if a, err := readAnswer(br); err != nil || a.Status != http.StatusOK {
				t.Fatalf("the next request: %+v %v", a, err)
			}
		})
	}
}
