package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// adminGet asks the gateway's admin listener for path and returns the body
// of its 200 answer.
func adminGet(t *testing.T, g *gatewayProc, path string) string {
	t.Helper()
	resp, err := http.Get(g.Admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin %s: %d %v %q", path, resp.StatusCode, err, trim(string(b)))
	}
	return string(b)
}

// The gateway is the platform's public door, so its metrics (routes,
// upstream names, error rates, limiter decisions) are served on the admin
// listener only, where Prometheus scrapes them. On the public address
// /metrics, in any spelling of the target, is a path like any other: not
// routed, so a 404 problem, and never the registry. It was served there.
func TestMetricsOnlyOnTheAdminListener(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	g := rawGateway(w, up)
	for _, head := range []string{
		"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /metrics?x HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /metrics/ HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET //metrics HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /METRICS HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /%6detrics HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /./metrics HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET http://gw/metrics HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /metrics HTTP/1.0\r\nHost: gw\r\n\r\n",
	} {
		a := exchange(t, g.Addr, head, 1)[0]
		if a.Status != http.StatusNotFound || strings.Contains(a.Body, "# TYPE") || strings.Contains(a.Body, "process_") {
			t.Errorf("%q on the public address: %d %q, want a 404 and no metrics", trim(head), a.Status, trim(a.Body))
		}
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests for /metrics", n)
	}
	if body := adminGet(t, g, "/metrics"); !strings.Contains(body, "process_open_fds") {
		t.Fatalf("admin /metrics has no process_open_fds: %q", trim(body))
	}
}

// /healthz and /readyz, answered outside the chain, still speak only the
// versions the chain does (RFC 9110 §15.6.6): another is 505 and the
// connection closes. They answered 200 and kept the connection open, and
// since the transports do not read the body of such a request, its body (a
// whole request, to a hop in front that framed it by Content-Length) was
// read as the next request and proxied.
func TestAdminPathsSpeakOnlyHTTP1(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	g := rawGateway(w, up)
	smuggled := get("smuggled")
	for _, head := range []string{
		"GET /healthz HTTP/1.2\r\nHost: gw\r\nConnection: keep-alive\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n",
		"POST /readyz HTTP/2.0\r\nHost: gw\r\nConnection: keep-alive\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n",
		"GET /readyz HTTP/0.9\r\nHost: gw\r\nConnection: keep-alive\r\n\r\n",
		"GET http://gw/healthz?x HTTP/3.0\r\nHost: gw\r\nConnection: keep-alive\r\n\r\n",
	} {
		t.Run(strings.Fields(head)[1]+" "+strings.Fields(head)[2], func(t *testing.T) {
			t.Parallel() // each waits up to the event loop's linger
			c := dialRaw(t, g.Addr)
			defer c.Close()
			writeSplit(t, c, head+smuggled)
			br := bufio.NewReader(c)
			a, err := readAnswer(br)
			if err != nil || a.Status != http.StatusHTTPVersionNotSupported || a.problem() != "version-not-supported" {
				t.Fatalf("first answer %+v %v, want 505 version-not-supported", a, err)
			}
			if !closedAfter(c, br) {
				t.Fatal("the connection stayed open after the 505, and answered more")
			}
		})
	}
	t.Cleanup(func() {
		if n := up.hits.Load(); n != 0 {
			t.Errorf("the upstream got %d requests that followed an admin request of another HTTP version", n)
		}
	})
}

// A request to /healthz or /readyz is answered outside the chain only when
// the chain would take its framing; any other is the chain's, refused (and
// closed) as on every path, or answered and closed where it is ambiguous.
// They skipped the chain's checks: "Content-Length : 51" (a 51-byte body to
// a lenient hop in front, none here) got 200 on a kept connection and the
// body, a whole request, was proxied as the next one (CL.0 smuggling); a
// chunked request that also had a Content-Length kept its connection.
func TestAdminPathsAreFramedAsEveryPath(t *testing.T) {
	w := newWorld(t)
	up := startRawUpstream(t)
	g := rawGateway(w, up)
	smuggled := get("smuggled")
	n := strconv.Itoa(len(smuggled))
	for _, tc := range []struct{ name, head string }{
		{"Content-Length with a space before the colon", "POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length : " + n + "\r\n\r\n"},
		{"Transfer-Encoding with a space before the colon", "POST /readyz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\r\n"},
		{"Transfer-Encoding identity", "POST /healthz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\nContent-Length: " + n + "\r\n\r\n"},
		{"chunked and Content-Length", "POST /readyz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: " + n + "\r\n\r\n0\r\n\r\n"},
		{"chunked in HTTP/1.0", "POST /healthz HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"two Hosts", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: gw\r\n\r\n"},
		{"no Host", "GET /readyz HTTP/1.1\r\n\r\n"},
		{"absolute form, no Host", "GET http://gw/healthz HTTP/1.1\r\n\r\n"},
		{"invalid Host", "GET /healthz HTTP/1.1\r\nHost: user@gw\r\n\r\n"},
		{"CONNECT", "CONNECT /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits up to the event loop's linger
			c := dialRaw(t, g.Addr)
			defer c.Close()
			writeSplit(t, c, tc.head+smuggled)
			br := bufio.NewReader(c)
			a, err := readAnswer(br)
			if err != nil || a.Status == http.StatusOK {
				t.Fatalf("first answer %+v %v: answered outside the chain", a, err)
			}
			if !closedAfter(c, br) {
				t.Fatalf("the connection stayed open after %d %s, and answered more", a.Status, a.problem())
			}
		})
	}
	t.Cleanup(func() {
		if n := up.hits.Load(); n != 0 {
			t.Errorf("the upstream got %d requests that followed a request to an admin path", n)
		}
	})
}

// Prometheus reads the gateway's series on the admin listener alone, so a
// gateway that cannot take ADMIN_ADDR stops at start, naming it, as the
// services (pkg/server) do; it used to log a warning and run without metrics
// and pprof, ready and unobserved.
func TestAdminAddressTakenStopsTheGateway(t *testing.T) {
	w := newWorld(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	out, err := exitWithin(t, w.gatewayCommand(freeAddr(t), taken.Addr().String()), 10*time.Second)
	if err == nil || !strings.Contains(out, taken.Addr().String()) {
		t.Fatalf("gateway with ADMIN_ADDR taken: %v, want a failed start naming %s:\n%s", err, taken.Addr(), out)
	}
}
