package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMisspeltDynamicConfigKeepsTheLastGood: a document whose section or
// limit name is misspelt is a bad document, like malformed JSON: the
// gateway keeps the last good one and counts it in dynconfig_rejected.
// Such a document was taken as valid (JSON ignores unknown names), so it
// read as "no limits given" and put every limit back to the environment's
// while the log said "dynamic config applied".
func TestMisspeltDynamicConfigKeepsTheLastGood(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway()
	// allowed is how many of 4 requests of a fresh user pass.
	allowed := func() int {
		hdr := map[string]string{"Authorization": "Bearer " + w.token("dyncfg-"+randHex(6))}
		n := 0
		for range 4 {
			if w.do(g, "GET", "/api/v1/orders", hdr, nil).Status == 200 {
				n++
			}
		}
		return n
	}
	w.setDynamic(`{"limits": {"user": "2/1m:2"}}`)
	eventually(t, 5*time.Second, "the good document applied", func() bool { return allowed() == 2 })

	for i, doc := range []string{
		`{"limits": {"user": `, // malformed JSON, for comparison
		`{"limit": {"user": "100000/1s"}}`,
		`{"limits": {"users": "100000/1s"}}`,
		`{"limits": {"user": "100000/1s"}, "timeout": {"orders": "1ms"}}`,
	} {
		w.setDynamic(doc)
		// Until it is counted as rejected or its limit shows.
		start := time.Now()
		for rejected(t, g, w.dynKey) < i+1 && allowed() == 2 && time.Since(start) < 3*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		if r, n := rejected(t, g, w.dynKey), allowed(); r != i+1 || n != 2 {
			t.Fatalf("after %s: dynconfig_rejected %d (want %d), a fresh user passed %d of 4 (want the last good limit's 2)", doc, r, i+1, n)
		}
	}

	w.setDynamic(`{"limits": {"user": "3/1m:3"}}`)
	eventually(t, 5*time.Second, "a later good document applied", func() bool { return allowed() == 3 })
}

// rejected is the gateway's dynconfig_rejected count for its dynamic key (0
// while there is none).
func rejected(t *testing.T, g *gatewayProc, dynKey string) int {
	t.Helper()
	resp, err := http.Get(g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "dynconfig_rejected") || !strings.Contains(line, `"/shanhai/config/`+dynKey+`"`) {
			continue
		}
		var f float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &f); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		return int(f)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestDynamicConfigNamingWhatIsNotRoutedIsLogged: canary weights for a
// service no route goes to, or a timeout for a route the table does not
// have, do nothing. Such a document is not refused, since gateways with
// other route tables may share the key, but the names are logged at warn
// level: a misspelt "ordr" or "order" (for the route "orders") was applied
// as silently as a right one.
func TestDynamicConfigNamingWhatIsNotRoutedIsLogged(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway()
	w.setDynamic(`{"canary": {"` + w.svc + `x": {"v1": 100}}, "timeouts": {"order": "1s", "orders": "2s"}, "keyed_retry": {"user": true}}`)
	eventually(t, 5*time.Second, "a warning naming what is not routed", func() bool {
		b, err := os.ReadFile(g.Log)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, `canary `+w.svc+`x`) &&
				strings.Contains(line, `timeouts order`) && !strings.Contains(line, `timeouts orders`) &&
				strings.Contains(line, `keyed_retry user`) {
				return true
			}
		}
		return false
	})
}

// A dynamic route timeout above GATEWAY_MAX_TIMEOUT is cut to it, and said
// once, when the document is applied, naming the routes: not per request,
// which would be a line per request for as long as the document stands
// (c912c225). Which routes the line names, and when there is none, is
// TestWarnCutTimeoutsNamesTheRoutesAboveTheCap's; this one shows that a
// document from etcd brings the line and requests bring none.
func TestDynamicTimeoutAboveTheCapLoggedOncePerDocument(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway("GATEWAY_MAX_TIMEOUT=2s", "GATEWAY_ROUTE_TIMEOUT=1s")
	w.setDynamic(`{"timeouts": {"orders": "1h", "products": "1s"}}`)
	cut := func() int {
		b, err := os.ReadFile(g.Log)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "above GATEWAY_MAX_TIMEOUT are cut") {
				if !strings.Contains(line, `"routes":["orders"]`) {
					t.Fatalf("the warning names other routes than orders: %s", line)
				}
				n++
			}
		}
		return n
	}
	eventually(t, 5*time.Second, "a warning naming the cut route", func() bool { return cut() > 0 })
	hdr := map[string]string{"Authorization": "Bearer " + w.token("u1")}
	for range 3 {
		if r := w.do(g, "GET", "/api/v1/orders", hdr, nil); r.Status != 200 {
			t.Fatalf("GET /api/v1/orders: %d %s", r.Status, r.Body)
		}
	}
	if n := cut(); n != 1 {
		t.Fatalf("the cut was logged %d times for one document and three requests, want once", n)
	}
}
