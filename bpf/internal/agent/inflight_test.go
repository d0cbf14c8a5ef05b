package agent

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
)

// concurrently runs n copies of fn at once and waits for them.
func concurrently(n int, fn func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	wg.Wait()
}

// A request in flight whose slot another goroutine holds goes to the in-flight hash (65536 entries per executable,
// one per goroutine that ever took it: a WebSocket server's sessions are requests in flight for as long as they last).
// When that had no room either, serve_http_enter returned and the request was never counted, and nothing said so
// (found by review). It is counted in shanhai_bpf_series_dropped_total now: 16 requests held in their handler at once,
// with one slot and four fallback entries, are each either counted or dropped, and some are dropped.
func TestServerInflightDroppedAreCounted(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{slotEntries: 1, inflightEntries: 4}, bin)
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	const n = 16
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	concurrently(n, func() { tg.get(t, c, "GET", "/work?us=300000") })
	eventually(t, func() (bool, string) {
		snap, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		counted, dropped := snap.ServerTotal(tg.pid), seriesDropped(t, a)
		return counted < n && counted+dropped == n, fmt.Sprintf("counted %d + dropped %d, want %d with some dropped", counted, dropped, n)
	})
}

// The same for the call probes' in-flight hash (call_inflight): 16 client calls in flight at once in one process,
// with one slot and four fallback entries, are each counted or in shanhai_bpf_call_series_dropped_total.
func TestCallInflightDroppedAreCounted(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	server := startTarget(t, buildTarget(t, false)) // answers the calls; the agent probes only its own copy
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{slotEntries: 1, inflightEntries: 4}, bin)
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	const n = 16
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	u := url.QueryEscape(server.base + "/work?us=300000")
	concurrently(n, func() { tg.get(t, c, "GET", "/call?n=1&url="+u) })
	eventually(t, func() (bool, string) {
		snap, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		var counted uint64
		for k, h := range snap.Calls {
			if k.System == "http" && k.PID == tg.pid {
				counted += h.Count
			}
		}
		d, err := a.CallSeriesDropped()
		if err != nil {
			return false, err.Error()
		}
		dropped := d["httpclient"]
		return counted < n && counted+dropped == n, fmt.Sprintf("counted %d + dropped %d, want %d with some dropped", counted, dropped, n)
	})
}
