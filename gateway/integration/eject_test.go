package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// One instance killed (its lease not yet lapsed, so discovery still lists
// it) refuses every connection. The breaker is per service: counted as the
// service's failures, those refusals opened it within about twenty requests
// and the live instance was cut off too, 503s for a service that was up.
// The dead instance is ejected from picking instead, and a request whose
// connection it refused (nothing was sent) goes to the live one: a POST as
// well as a GET.
func TestDeadInstanceIsEjectedNotTheService(t *testing.T) {
	w := newWorld(t)
	live := w.startUpstream("live", "v1")
	dead := w.startUpstream("dead", "v1")
	g := w.startGateway()
	eventually(t, 5*time.Second, "both instances routed", func() bool {
		w.do(g, "GET", "/api/v1/products", nil, nil)
		return live.hits() > 0 && dead.hits() > 0
	})

	dead.kill()
	killed := time.Now()
	before := live.hits()
	const n = 60
	hdr := map[string]string{"Authorization": "Bearer " + w.token("eject-user")}
	statuses := map[string]int{}
	for i := range n {
		method := "POST"
		if i%3 == 2 {
			method = "GET"
		}
		r := w.do(g, method, "/api/v1/users", hdr, strings.NewReader(`{}`))
		key := strconv.Itoa(r.Status)
		if r.Status != 200 {
			key += " " + problemType(t, r)
		}
		statuses[key]++
	}
	// The lease is 5 s (testupstream): the dead instance was listed all along.
	if since := time.Since(killed); since > 4*time.Second {
		t.Fatalf("the %d requests took %v, past the dead instance's lease", n, since)
	}
	if statuses["200"] != n {
		t.Fatalf("answers to %d requests with one of two instances dead: %v", n, statuses)
	}
	if got := live.hits() - before; got != n {
		t.Fatalf("live instance got %d of %d requests", got, n)
	}
	if got := ejections(t, g, w.svc); got < 1 {
		t.Fatalf("ejections of %s on /metrics: %d, want at least 1", w.svc, got)
	}
}

// ejections reads shanhai_gateway_upstream_ejections_total for svc from the
// gateway's /metrics (0 when absent).
func ejections(t *testing.T, g *gatewayProc, svc string) int {
	t.Helper()
	resp, err := http.Get(g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "shanhai_gateway_upstream_ejections_total{") || !strings.Contains(line, `shanhai_upstream="`+svc+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		total += int(v)
	}
	return total
}

// A dead canary (the only instance of v2, killed, still listed) refuses
// every connection; being the last of its version it is not ejected, and
// its refusals are failures. The breaker was per service, so the canary's
// testers (X-Release-Tag: v2) opened it within about twenty requests and the
// stable release's traffic got 503 circuit-open while every v1 instance was
// up. The breaker now keeps each release apart: v2's failures open v2's.
func TestDeadCanaryDoesNotOpenTheBreakerOfTheStableRelease(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("stable", "v1")
	canary := w.startUpstream("canary", "v2")
	// Untagged traffic all to v1; the canary only by its tag.
	w.setDynamic(fmt.Sprintf(`{"canary": {%q: {"v1": 1}}}`, w.svc))
	g := w.startGateway()
	v2 := map[string]string{"X-Release-Tag": "v2"}
	eventually(t, 5*time.Second, "the canary routed", func() bool {
		return w.do(g, "GET", "/api/v1/products", v2, nil).Echo.Version == "v2"
	})

	canary.kill()
	killed := time.Now()
	tagged := map[string]int{}
	for range 40 {
		r := w.do(g, "GET", "/api/v1/products", v2, nil)
		tagged[strconv.Itoa(r.Status)+" "+problemType(t, r)]++
	}
	stable := map[string]int{}
	for range 40 {
		r := w.do(g, "GET", "/api/v1/products", nil, nil)
		key := strconv.Itoa(r.Status)
		if r.Status != 200 {
			key += " " + problemType(t, r)
		} else if r.Echo.Version != "v1" {
			key += " from " + r.Echo.Version
		}
		stable[key]++
	}
	if since := time.Since(killed); since > 4*time.Second {
		t.Fatalf("the requests took %v, past the dead canary's lease", since)
	}
	if stable["200"] != 40 {
		t.Fatalf("untagged (stable v1) answers with only the canary dead: %v (the canary's: %v)", stable, tagged)
	}
	if tagged["503 circuit-open"] == 0 {
		t.Fatalf("the dead canary's breaker never opened: %v", tagged)
	}
}
