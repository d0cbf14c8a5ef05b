package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Client-sent user ids never reach an upstream, in any spelling; the
// verified one does. Hop-by-hop headers are stripped both ways.
func TestClientUserIDNeverReachesUpstream(t *testing.T) {
	w := newWorld(t)
	up := w.startUpstream("a", "v1")
	g := w.startGateway()
	tok := w.token("real-user")
	eventually(t, 2*time.Second, "routed", func() bool {
		return w.do(g, "GET", "/api/v1/orders", map[string]string{"Authorization": "Bearer " + tok}, nil).Status == 200
	})

	// Raw requests, so that spellings net/http would normalise go out as written.
	send := func(extra string, path string, withToken bool) string {
		id := "uid-" + randHex(4)
		req := "GET " + path + " HTTP/1.1\r\nHost: gw\r\nX-Request-ID: " + id + "\r\n" + extra
		if withToken {
			req += "Authorization: Bearer " + tok + "\r\n"
		}
		req += "Connection: close, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\r\n"
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		if resp.Header.Get("X-Upstream-Private") != "" {
			t.Fatal("a header the upstream's Connection named was passed to the client")
		}
		return id
	}
	// The '_' spellings of the forwarded fields too: CGI, PHP and WSGI read
	// X_Forwarded_For as the same variable as the gateway's X-Forwarded-For.
	// And two Cookie lines fasthttp would rewrite into one ("b" for "=b").
	spoof := "X-User-ID: admin\r\nx-user-id: admin2\r\nX_User_ID: admin3\r\nx-USER-id: admin4\r\n" +
		"X_Forwarded_For: 6.6.6.6\r\nx_forwarded-proto: https\r\nX_Real_IP: 6.6.6.7\r\n" +
		"Cookie: a=\"1\";c=3\r\nCookie: =b\r\n"
	for _, tc := range []struct {
		path      string
		withToken bool
		want      []string
	}{
		{"/api/v1/orders", true, []string{"real-user"}},
		{"/api/v1/products", false, nil}, // public, anonymous: no user id at all
	} {
		id := send(spoof, tc.path, tc.withToken)
		s, ok := up.seen(id)
		if !ok {
			t.Fatalf("%s: upstream did not see the request", tc.path)
		}
		var got []string
		for k, v := range s.Header {
			if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-User-Id") {
				got = append(got, v...)
			}
			if strings.EqualFold(k, "X-Hop") || strings.EqualFold(k, "Keep-Alive") {
				t.Fatalf("%s: hop-by-hop header %s reached the upstream", tc.path, k)
			}
			if strings.Contains(k, "_") {
				t.Errorf("%s: %s: %q reached the upstream", tc.path, k, v)
			}
		}
		if c := s.Header["Cookie"]; strings.Join(c, "|") != `a="1";c=3|=b` {
			t.Errorf("%s: upstream saw Cookie lines %q, want them as sent", tc.path, c)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Fatalf("%s: upstream saw user ids %q, want %q", tc.path, got, tc.want)
		}
	}
}

// Tokens: missing or invalid on a protected route is 401; public routes pass.
func TestAuthentication(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway()
	good := map[string]string{"Authorization": "Bearer " + w.token("auth-user")}
	eventually(t, 2*time.Second, "routed", func() bool { return w.do(g, "GET", "/api/v1/orders", good, nil).Status == 200 })
	for name, hdr := range map[string]map[string]string{
		"none":     nil,
		"garbage":  {"Authorization": "Bearer not.a.jwt"},
		"tampered": {"Authorization": good["Authorization"] + "x"},
		"basic":    {"Authorization": "Basic dXNlcjpwYXNz"},
	} {
		r := w.do(g, "GET", "/api/v1/orders", hdr, nil)
		if r.Status != 401 || r.Header.Get("WWW-Authenticate") == "" || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s token: %d %v", name, r.Status, r.Header)
		}
	}
	for _, c := range [][2]string{{"POST", "/api/v1/users"}, {"POST", "/api/v1/sessions"}, {"POST", "/api/v1/sessions/refresh"}, {"GET", "/api/v1/products"}} {
		if r := w.do(g, c[0], c[1], nil, strings.NewReader("{}")); r.Status != 200 {
			t.Errorf("public %s %s: %d", c[0], c[1], r.Status)
		}
	}
	if r := w.do(g, "GET", "/api/v1/products/../orders", nil, nil); r.Status != 401 {
		t.Errorf("dot-dot from a public route to a protected one: %d", r.Status)
	}
}

// Oversized bodies get 413 and never reach the upstream.
func TestOversizedBodyGets413(t *testing.T) {
	w := newWorld(t)
	up := w.startUpstream("a", "v1")
	g := w.startGateway("GATEWAY_MAX_BODY_BYTES=1024")
	hdr := map[string]string{"Authorization": "Bearer " + w.token("body-user")}
	eventually(t, 2*time.Second, "routed", func() bool { return w.do(g, "GET", "/api/v1/orders", hdr, nil).Status == 200 })
	before := up.hits()
	if r := w.do(g, "POST", "/api/v1/orders", hdr, strings.NewReader(strings.Repeat("x", 1000))); r.Status != 200 {
		t.Fatalf("body under the limit: %d", r.Status)
	}
	r := w.do(g, "POST", "/api/v1/orders", hdr, strings.NewReader(strings.Repeat("x", 4096)))
	if r.Status != 413 || problemType(t, r) != "body-too-large" {
		t.Fatalf("oversized body: %d %s", r.Status, r.Body)
	}
	// Chunked, so the size is only known while reading.
	pr, pw := io.Pipe()
	go func() { _, _ = pw.Write([]byte(strings.Repeat("y", 8192))); pw.Close() }()
	if r := w.do(g, "POST", "/api/v1/orders", hdr, pr); r.Status != 413 {
		t.Fatalf("oversized chunked body: %d", r.Status)
	}
	if got := up.hits() - before; got != 1 {
		t.Fatalf("upstream saw %d requests, want only the small one", got)
	}
}

// A slowloris client (headers dribbled byte by byte) is cut off at the read
// timeout while other clients are served.
func TestSlowlorisIsCutOff(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway("GATEWAY_READ_TIMEOUT=600ms")
	c, err := net.Dial("tcp", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	partial := "GET /api/v1/products HTTP/1.1\r\nHost: gw\r\nX-Slow: "
	for i := 0; i < 100; i++ {
		// Other clients are unaffected meanwhile.
		if i == 3 {
			if r := w.do(g, "GET", "/api/v1/products", nil, nil); r.Status != 200 {
				t.Fatalf("normal client during slowloris: %d", r.Status)
			}
		}
		select {
		case took := <-closed:
			if took > 3*time.Second {
				t.Fatalf("slow client held the connection for %v", took)
			}
			t.Logf("slow client cut off after %v", took)
			return
		default:
		}
		_, _ = c.Write([]byte{partial[i%len(partial)]})
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("slow client was never cut off")
}

// RED metrics per route and upstream, limiter decisions and breaker state
// are on /metrics (of the admin listener), and traces leave with the request.
func TestMetricsAndTracePropagation(t *testing.T) {
	w := newWorld(t)
	up := w.startUpstream("a", "v1")
	g := w.startGateway()
	hdr := map[string]string{"Authorization": "Bearer " + w.token("metrics-user"),
		"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Request-ID": "m-" + randHex(4)}
	eventually(t, 2*time.Second, "routed", func() bool { return w.do(g, "GET", "/api/v1/orders", hdr, nil).Status == 200 })
	s, ok := up.seen(hdr["X-Request-ID"])
	tp := first(s.Header["Traceparent"])
	if !ok || !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(tp, "00f067aa0ba902b7") {
		t.Fatalf("upstream traceparent %q: want the client's trace with the gateway's own span id", tp)
	}
	body := adminGet(t, g, "/metrics")
	for _, want := range []string{
		`http_server_request_duration_seconds_bucket{`, `http_route="orders"`,
		`http_client_request_duration_seconds_bucket{`, `shanhai_upstream="` + w.svc + `"`,
		`shanhai_gateway_limit_decisions_total{`, `shanhai_breaker_state{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
