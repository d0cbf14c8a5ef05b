package integration

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func problemType(t *testing.T, r result) string {
	t.Helper()
	var p struct {
		Type string `json:"type"`
	}
	if r.Header.Get("Content-Type") != "application/problem+json" || json.Unmarshal(r.Body, &p) != nil {
		return ""
	}
	return p.Type[strings.LastIndexByte(p.Type, '/')+1:]
}

// The breaker opens after failures, fails fast while open (the upstream sees
// nothing), lets trials through half-open and closes when they succeed.
func TestBreakerOpensFailsFastHalfOpensAndRecovers(t *testing.T) {
	w := newWorld(t)
	up := w.startUpstream("a", "v1")
	g := w.startGateway("GATEWAY_BREAKER_MIN_REQUESTS=5", "GATEWAY_BREAKER_FAILURE_RATIO=0.5",
		"GATEWAY_BREAKER_OPEN=700ms", "GATEWAY_MAX_ATTEMPTS=1")
	hdr := map[string]string{"Authorization": "Bearer " + w.token("breaker-user")}
	eventually(t, 2*time.Second, "routed", func() bool { return w.do(g, "GET", "/api/v1/orders", hdr, nil).Status == 200 })

	up.control(503, 0)
	opened := false
	for i := 0; i < 50 && !opened; i++ {
		r := w.do(g, "GET", "/api/v1/orders", hdr, nil)
		opened = problemType(t, r) == "circuit-open"
	}
	if !opened {
		t.Fatal("breaker did not open after 50 failures")
	}
	before := up.hits()
	for range 20 {
		r := w.do(g, "GET", "/api/v1/orders", hdr, nil)
		if r.Status != 503 || problemType(t, r) != "circuit-open" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("while open: %d %s", r.Status, r.Body)
		}
	}
	if after := up.hits(); after != before {
		t.Fatalf("open breaker let %d requests through", after-before)
	}

	up.control(0, 0) // healthy again
	time.Sleep(800 * time.Millisecond)
	// Half-open: trials go through and succeed, then the breaker closes.
	for i := range 20 {
		if r := w.do(g, "GET", "/api/v1/orders", hdr, nil); r.Status != 200 {
			t.Fatalf("request %d after recovery: %d %s", i, r.Status, r.Body)
		}
	}
	if got := up.hits() - before; got != 20 {
		t.Fatalf("upstream saw %d of 20 requests after recovery", got)
	}
}

// Retries: never for a POST without Idempotency-Key; GETs and keyed POSTs are
// retried on another instance; under a full outage the budget caps retries.
func TestRetriesOnlyIdempotentAndWithinBudget(t *testing.T) {
	w := newWorld(t)
	bad := w.startUpstream("bad", "v1")
	good := w.startUpstream("good", "v1")
	g := w.startGateway("GATEWAY_BREAKER_MIN_REQUESTS=1000000", "GATEWAY_MAX_ATTEMPTS=2",
		"GATEWAY_RETRY_BUDGET=0.1", "GATEWAY_RETRY_FLOOR=1")
	hdr := map[string]string{"Authorization": "Bearer " + w.token("retry-user")}
	eventually(t, 2*time.Second, "both instances routed", func() bool {
		seen := map[string]bool{}
		for range 20 {
			seen[w.do(g, "GET", "/api/v1/orders", hdr, nil).Echo.Instance] = true
		}
		return seen["bad"] && seen["good"]
	})
	bad.control(503, 0)

	// POST without a key: each request reaches exactly one instance once.
	b0, g0 := bad.hits(), good.hits()
	failedPosts := 0
	for range 40 {
		if r := w.do(g, "POST", "/api/v1/orders", hdr, strings.NewReader(`{}`)); r.Status == 503 {
			failedPosts++
		}
	}
	if hits := bad.hits() - b0 + good.hits() - g0; hits != 40 {
		t.Fatalf("40 POSTs without Idempotency-Key made %d upstream calls", hits)
	}
	if failedPosts == 0 {
		t.Fatal("no POST reached the failing instance; the test proves nothing")
	}

	// Keyed POSTs and GETs that hit the bad instance are retried on the good one.
	for i := range 20 {
		h := map[string]string{"Authorization": hdr["Authorization"], "Idempotency-Key": "k-" + strconv.Itoa(i)}
		if r := w.do(g, "POST", "/api/v1/orders", h, strings.NewReader(`{}`)); r.Status != 200 {
			t.Fatalf("keyed POST %d: %d (not retried?)", i, r.Status)
		}
	}

	// Full outage: the budget (10% of requests + 1/s floor over 10s) caps retries.
	good.control(503, 0)
	time.Sleep(1100 * time.Millisecond) // let the earlier requests age a little; the floor still applies
	b0, g0 = bad.hits(), good.hits()
	const n = 200
	for range n {
		w.do(g, "GET", "/api/v1/orders", hdr, nil)
	}
	hits := bad.hits() - b0 + good.hits() - g0
	retries := hits - n
	t.Logf("outage: %d requests made %d upstream calls (%d retries)", n, hits, retries)
	// Budget: ratio 0.1 of every request in the window (these 200 and the
	// 60 before) + 10 from the floor; without it there would be 200 retries.
	if retries > 0.1*(n+60)+10+1 {
		t.Fatalf("%d retries for %d requests: the budget does not cap them", retries, n)
	}
	if retries == 0 {
		t.Fatal("no retries at all during the outage")
	}
}

// A keyed POST is retried only on a route whose upstream honours
// Idempotency-Key (GATEWAY_KEYED_RETRY_ROUTES, by default the order route):
// on the user service's routes the failed instance may have done the work,
// and a retry did it again (a refresh rotated twice revokes the session
// family). The dynamic config's keyed_retry turns a route's flag on at run
// time.
func TestKeyedPostRetriedOnlyWhereTheUpstreamHonoursTheKey(t *testing.T) {
	w := newWorld(t)
	bad := w.startUpstream("bad", "v1")
	good := w.startUpstream("good", "v1")
	g := w.startGateway("GATEWAY_BREAKER_MIN_REQUESTS=1000000", "GATEWAY_MAX_ATTEMPTS=2",
		"GATEWAY_RETRY_BUDGET=1", "GATEWAY_RETRY_FLOOR=100")
	hdr := map[string]string{"Authorization": "Bearer " + w.token("keyed-user")}
	eventually(t, 2*time.Second, "both instances routed", func() bool {
		seen := map[string]bool{}
		for range 20 {
			seen[w.do(g, "GET", "/api/v1/orders", hdr, nil).Echo.Instance] = true
		}
		return seen["bad"] && seen["good"]
	})
	bad.control(503, 0)

	keyed := func(i int) map[string]string {
		return map[string]string{"Authorization": hdr["Authorization"], "Idempotency-Key": "k-" + strconv.Itoa(i)}
	}
	b0, g0 := bad.hits(), good.hits()
	const n = 40
	for i := range n {
		w.do(g, "POST", "/api/v1/users", keyed(i), strings.NewReader(`{}`))
	}
	if bad.hits() == b0 {
		t.Fatal("no keyed POST reached the failing instance; the test proves nothing")
	}
	if hits := bad.hits() - b0 + good.hits() - g0; hits != n {
		t.Fatalf("%d keyed POSTs to /api/v1/users made %d upstream calls: retried where the key is not honoured", n, hits)
	}
	for i := range 20 {
		if r := w.do(g, "POST", "/api/v1/orders", keyed(i), strings.NewReader(`{}`)); r.Status != 200 {
			t.Fatalf("keyed POST /api/v1/orders %d: %d (not retried?)", i, r.Status)
		}
	}

	w.setDynamic(`{"keyed_retry": {"users": true}}`)
	eventually(t, 5*time.Second, "keyed POSTs to /api/v1/users retried once keyed_retry marks the route", func() bool {
		for i := range 20 {
			if r := w.do(g, "POST", "/api/v1/users", keyed(i), strings.NewReader(`{}`)); r.Status != 200 {
				return false
			}
		}
		return true
	})
}

// A slow upstream yields 504 at the route timeout, and the upstream was told
// how long it had.
func TestSlowUpstreamGets504AtRouteTimeoutAndSeesDeadline(t *testing.T) {
	w := newWorld(t)
	up := w.startUpstream("slow", "v1")
	g := w.startGateway("GATEWAY_ROUTE_TIMEOUT=1s")
	hdr := map[string]string{"Authorization": "Bearer " + w.token("slow-user"), "X-Request-ID": "slow-" + randHex(4)}
	eventually(t, 2*time.Second, "routed", func() bool {
		return w.do(g, "GET", "/api/v1/orders", map[string]string{"Authorization": hdr["Authorization"]}, nil).Status == 200
	})

	start := time.Now()
	r := w.do(g, "GET", "/api/v1/orders?sleep=3s", hdr, nil)
	took := time.Since(start)
	if r.Status != 504 || problemType(t, r) != "timeout" {
		t.Fatalf("slow upstream: %d %s", r.Status, r.Body)
	}
	if took < time.Second || took > 2500*time.Millisecond {
		t.Fatalf("504 after %v, want about the 1s route timeout", took)
	}
	s, ok := up.seen(hdr["X-Request-ID"])
	if !ok {
		t.Fatal("upstream never saw the request")
	}
	ms, err := strconv.Atoi(first(s.Header["X-Request-Timeout-Ms"]))
	if err != nil || ms <= 0 || ms > 1000 {
		t.Fatalf("upstream saw X-Request-Timeout-Ms %q, want 1..1000", first(s.Header["X-Request-Timeout-Ms"]))
	}

	// A client with less time than the route gets its own, shorter deadline.
	hdr["X-Request-ID"] = "slow-" + randHex(4)
	hdr["X-Request-Timeout-Ms"] = "150"
	start = time.Now()
	if r := w.do(g, "GET", "/api/v1/orders?sleep=3s", hdr, nil); r.Status != 504 || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("client deadline 150ms: %d after %v", r.Status, time.Since(start))
	}
	s, _ = up.seen(hdr["X-Request-ID"])
	if ms, _ := strconv.Atoi(first(s.Header["X-Request-Timeout-Ms"])); ms <= 0 || ms > 150 {
		t.Fatalf("upstream saw %v, want at most the client's 150ms", s.Header["X-Request-Timeout-Ms"])
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
