package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newSocketAgent(t *testing.T, targets ...string) *Agent {
	t.Helper()
	requireRoot(t)
	a, err := New(Config{Targets: targets, HTTPProbe: HTTPProbeSocket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestHTTPSocketRED runs the uprobe probe's checks (testRED: exact counts per method and status, status classes,
// PUT latency quantiles within 15% + 300us of the server's own) against the socket-layer probe. Its span is wider on
// both ends than the handler's (from the read of the request to the write of the response), still within them.
func TestHTTPSocketRED(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newSocketAgent(t, bin)
	tg := startTarget(t, bin)
	a.Scan() // the socket probe counts a process once a scan has put it in the filter
	ts := a.Targets()
	if len(ts) != 1 || ts[0].PID != tg.pid || !slices.Contains(ts[0].Probes, "httpsock") || slices.Contains(ts[0].Probes, "httpserver") {
		t.Fatalf("targets = %+v, want pid %d with the httpsock probe and not the httpserver uprobe", ts, tg.pid)
	}
	testRED(t, a, tg)
}

// TestHTTPSocketCases: a fresh connection per request and keep-alive, HEAD (a response with no body), a request that
// expects 100-continue (an interim answer that must not end it), and traffic of a process that is not a target (an
// identical binary at another path), which must not be counted.
func TestHTTPSocketCases(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	other := filepath.Join(t.TempDir(), "other")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	a := newSocketAgent(t, bin)
	tg := startTarget(t, bin)
	og := startTarget(t, other)
	a.Scan()

	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	kept := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}
	const n = 30
	for i := range n {
		for _, g := range []*target{tg, og} {
			g.get(t, fresh, "GET", "/work?status=404")
			g.get(t, kept, "HEAD", "/work")
			g.get(t, kept, "DELETE", "/work?status=503")
			req, err := http.NewRequest("POST", g.base+"/work?read=1&status=201", strings.NewReader(strings.Repeat("x", 100+i)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Expect", "100-continue")
			resp, err := kept.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 201 {
				t.Fatalf("POST with 100-continue: %d", resp.StatusCode)
			}
		}
	}
	var st serverStats
	if err := json.Unmarshal([]byte(tg.get(t, kept, "GET", "/stats")), &st); err != nil {
		t.Fatal(err)
	}
	st.Counts["GET 200"]++ // the /stats request itself
	want := fmt.Sprint(map[string]uint64{"GET 404": n, "HEAD 200": n, "DELETE 503": n, "POST 201": n, "GET 200": 1})
	if got := fmt.Sprint(st.Counts); got != want {
		t.Fatalf("server counted %s, test sent %s", got, want)
	}
	eventually(t, func() (bool, string) { return serverCountsAre(a, tg.pid, want) })
}

// serverCountsAre reports whether the agent's HTTP server series are pid's only and count want ("METHOD STATUS" ->
// requests, formatted by fmt.Sprint), and what they are if not.
func serverCountsAre(a *Agent, pid int, want string) (bool, string) {
	snap, err := a.Snapshot()
	if err != nil {
		return false, err.Error()
	}
	got := map[string]uint64{}
	for k, h := range snap.Server {
		if k.PID != pid {
			return false, fmt.Sprintf("series of pid %d (the target is %d): %+v", k.PID, pid, k)
		}
		got[k.Method+" "+strconv.Itoa(k.Status)] = h.Count
	}
	return fmt.Sprint(got) == want, fmt.Sprintf("agent counts %v\nserver counts %v", got, want)
}

// TestHTTPSocketServedOnly: a target's own client connections are not served traffic, even where they carry HTTP.
// The target makes outbound HTTP calls (/call: it writes requests and reads responses) and answers HTTP requests on
// a connection it dialed (/reverse: it reads requests and writes "HTTP/1.1 200", which the byte patterns alone
// would count); only the requests its listener's connections brought may be counted, exactly.
func TestHTTPSocketServedOnly(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newSocketAgent(t, bin)
	tg := startTarget(t, bin)
	a.Scan()

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up\n") }))
	defer upstream.Close()
	const n = 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reverse := make(chan error, 1)
	go func() { reverse <- askOverAccepted(ln, n) }()

	c := &http.Client{}
	if got := tg.get(t, c, "GET", "/call?n="+strconv.Itoa(n)+"&url="+upstream.URL); got != fmt.Sprintf("{\"200\":%d}\n", n) {
		t.Fatalf("/call: %q", got)
	}
	if got := tg.get(t, c, "GET", "/reverse?n="+strconv.Itoa(n)+"&addr="+ln.Addr().String()); got != "" {
		t.Fatalf("/reverse: %q", got)
	}
	if err := <-reverse; err != nil {
		t.Fatal(err)
	}
	for range n {
		tg.get(t, c, "GET", "/work?status=202")
	}
	var st serverStats
	if err := json.Unmarshal([]byte(tg.get(t, c, "GET", "/stats")), &st); err != nil {
		t.Fatal(err)
	}
	st.Counts["GET 200"]++ // the /stats request itself
	want := fmt.Sprint(map[string]uint64{"GET 200": 3, "GET 202": n})
	if got := fmt.Sprint(st.Counts); got != want {
		t.Fatalf("server counted %s, test sent %s", got, want)
	}
	eventually(t, func() (bool, string) { return serverCountsAre(a, tg.pid, want) })
}

// askOverAccepted accepts one connection on ln and sends n HTTP requests over it, one at a time, each answered 200.
func askOverAccepted(ln net.Listener, n int) error {
	conn, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept the target's connection: %w", err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := range n {
		if _, err := io.WriteString(conn, "GET /asked HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
			return fmt.Errorf("request %d to the target: %w", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("answer %d from the target: %w", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("answer %d from the target: status %d", i, resp.StatusCode)
		}
	}
	return nil
}

// TestHTTPSocketFilter: the agent's scans keep the socket probe's pid filter equal to the live targets, pids beyond
// the array (possible where pid_max is above 65536) in the hash beside it.
func TestHTTPSocketFilter(t *testing.T) {
	requireRoot(t)
	p, err := attachSockProbe()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	in := func(pid int) bool {
		var v uint32
		if pid < pidArraySize {
			if err := p.objs.TargetPids.Lookup(uint32(pid), &v); err != nil {
				t.Fatal(err)
			}
			return v == 1
		}
		return p.objs.TargetPidsBig.Lookup(uint32(pid), &v) == nil && v == 1
	}
	const small, big = 4321, pidArraySize + 4321
	if err := p.setTargets(map[int]proc{small: {}, big: {}}); err != nil {
		t.Fatal(err)
	}
	if !in(small) || !in(big) || in(small+1) || in(big+1) {
		t.Fatalf("filter after adding %d and %d: %v %v, neighbours %v %v", small, big, in(small), in(big), in(small+1), in(big+1))
	}
	if err := p.setTargets(map[int]proc{big: {}}); err != nil {
		t.Fatal(err)
	}
	if in(small) || !in(big) {
		t.Fatalf("filter after %d exited: %v %v", small, in(small), in(big))
	}
	if err := p.setTargets(nil); err != nil {
		t.Fatal(err)
	}
	if in(big) {
		t.Fatalf("filter after %d exited: still in", big)
	}
}

// TestHTTPSocketNewSeriesAreNotLost is TestServerNewSeriesAreNotLost for the socket probe, whose series all live in
// its hash: 2000 series, one request each, counted exactly.
func TestHTTPSocketNewSeriesAreNotLost(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newSocketAgent(t, bin)
	tg := startTarget(t, bin)
	a.Scan()
	want := driveNewSeries(t, tg)
	eventually(t, func() (bool, string) { return seriesCountsAre(a, tg.pid, want) })
}
