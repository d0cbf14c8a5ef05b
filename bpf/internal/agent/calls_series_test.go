package agent

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCallNewSeriesAreNotLost is TestServerNewSeriesAreNotLost for the call probes (include/calls.h, shared by the
// HTTP client, database and messaging probes): every call of a series the probe has not seen yet inserts the series
// into the fallback hash (slotEntries 1 sends nearly all there), and none may be lost while the map has room. Five
// processes of the target each make one net/http client call per status 200-599 (the target's /call), 2000 series of
// one call each, and the agent must count each exactly once.
func TestCallNewSeriesAreNotLost(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	server := startTarget(t, buildTarget(t, false)) // answers the calls; the agent probes only its own copy
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{slotEntries: 1}, bin)
	a.Scan()
	callers := startTargets(t, bin, 5)
	a.Scan()
	c := &http.Client{}
	want := map[string]uint64{}
	for status := 200; status < 600; status++ {
		u := url.QueryEscape(server.base + "/work?status=" + strconv.Itoa(status))
		for _, tg := range callers {
			if got, w := strings.TrimSpace(tg.get(t, c, "GET", "/call?n=1&url="+u)), fmt.Sprintf(`{"%d":1}`, status); got != w {
				t.Fatalf("pid %d called status %d: it got %s, want %s", tg.pid, status, got, w)
			}
			want[callSeries(tg.pid, "GET", status, false)]++
		}
	}
	eventually(t, func() (bool, string) { return callCountsAre(a, want) })
}

func callSeries(pid int, method string, status int, failed bool) string {
	return fmt.Sprintf("%d %s %d error=%v", pid, method, status, failed)
}

// callCountsAre compares the agent's HTTP client calls with want (callSeries -> calls) as seriesCountsAre does the
// server's: how many calls and series differ, and the first few that do.
func callCountsAre(a *Agent, want map[string]uint64) (bool, string) {
	snap, err := a.Snapshot()
	if err != nil {
		return false, err.Error()
	}
	got := map[string]uint64{}
	for k, h := range snap.Calls {
		if k.System == "http" {
			got[callSeries(k.PID, k.Method, k.Status, k.Error)] += h.Count
		}
	}
	var sumGot, sumWant uint64
	var differ []string
	for k, n := range want {
		sumWant += n
		if got[k] != n {
			differ = append(differ, fmt.Sprintf("%s: agent %d, caller %d", k, got[k], n))
		}
	}
	for k, n := range got {
		sumGot += n
		if _, ok := want[k]; !ok {
			differ = append(differ, fmt.Sprintf("%s: agent %d, caller 0", k, n))
		}
	}
	slices.Sort(differ)
	return len(differ) == 0, fmt.Sprintf("agent counted %d calls in %d series, callers %d in %d; %d series differ, first %q",
		sumGot, len(got), sumWant, len(want), len(differ), differ[:min(len(differ), 5)])
}

// A call whose series finds no room in the call probe's maps is not counted, and shanhai_bpf_call_series_dropped_total
// says how many (call_record dropped them without a trace). Six processes x statuses 200-999 make 4800 series of one
// call each, more than the hash map's 4096 entries and a one-entry slot table per CPU hold on any machine with fewer
// than 700 CPUs: every call is either counted or dropped, and some are dropped.
func TestCallSeriesDroppedAreCounted(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	server := startTarget(t, buildTarget(t, false))
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{slotEntries: 1}, bin)
	a.Scan()
	callers := startTargets(t, bin, 6)
	a.Scan()
	c := &http.Client{}
	var sent uint64
	for status := 200; status < 1000; status++ {
		u := url.QueryEscape(server.base + "/work?status=" + strconv.Itoa(status))
		for _, tg := range callers {
			tg.get(t, c, "GET", "/call?n=1&url="+u)
			sent++
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	eventually(t, func() (bool, string) {
		snap, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		var counted uint64
		for k, h := range snap.Calls {
			if k.System == "http" {
				counted += h.Count
			}
		}
		mfs, err := reg.Gather()
		if err != nil {
			return false, err.Error()
		}
		dropped := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() == "shanhai_bpf_call_series_dropped_total" {
				for _, m := range mf.GetMetric() {
					dropped[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
		d := uint64(dropped["httpclient"])
		ok := counted < sent && counted+d == sent && dropped["db"] == 0 && dropped["messaging"] == 0 && len(dropped) == 3
		return ok, fmt.Sprintf("counted %d + dropped %v, want %d with some dropped by httpclient, none by the others", counted, dropped, sent)
	})
}

// shanhai_bpf_call_series_dropped_total must not go back when an executable's probes come off (no process runs it
// for BPF_DETACH_GRACE) and start again from zero when they are put back: as shanhai_bpf_series_dropped_total
// (TestSeriesDroppedSurvivesDetach), the agent carries a detached probe's count. The kernel counter is set directly
// here; TestCallSeriesDroppedAreCounted shows that the probe fills it.
func TestCallSeriesDroppedSurvivesDetach(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	a, bin := newDetachingAgent(t)
	ncpu := possibleCPUs(t)
	// set writes n drops on each CPU into the httpclient probe's counter of the one executable probed.
	set := func(n uint64) {
		t.Helper()
		a.mu.Lock()
		defer a.mu.Unlock()
		b := onlyBin(t, a)
		m := b.callDropped["httpclient"]
		if m == nil {
			t.Fatalf("%s: no httpclient probe (probes %v)", b.exe, b.probes)
		}
		if err := m.Put(uint32(0), slices.Repeat([]uint64{n}, ncpu)); err != nil {
			t.Fatal(err)
		}
	}
	dropped := func() uint64 {
		t.Helper()
		n, err := a.CallSeriesDropped()
		if err != nil {
			t.Fatal(err)
		}
		if n["db"] != 0 || n["messaging"] != 0 || len(n) != 3 {
			t.Fatalf("dropped calls %v: want the three call probes, only httpclient's moved", n)
		}
		return n["httpclient"]
	}
	set(3)
	first := dropped()
	if first != 3*uint64(ncpu) {
		t.Fatalf("dropped %d, want 3 on each of %d CPUs", first, ncpu)
	}
	away := bin + ".away" // no process runs the file and the path names nothing: the probes come off
	if err := os.Rename(bin, away); err != nil {
		t.Fatal(err)
	}
	a.Scan()
	if n := len(a.Targets()); n != 0 || func() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.bins) }() != 0 {
		t.Fatalf("the probes did not come off: %d targets", n)
	}
	if n := dropped(); n != first {
		t.Fatalf("%d dropped after the probes came off, want the %d before", n, first)
	}
	if err := os.Rename(away, bin); err != nil {
		t.Fatal(err)
	}
	startTarget(t, bin)
	a.Scan()
	set(1)
	if n, want := dropped(), first+uint64(ncpu); n != want {
		t.Fatalf("%d dropped after the probes were put back and dropped one on each CPU, want %d", n, want)
	}
}

// newDetachingAgent probes a copy of the target at a path of the test's own, with a grace of a nanosecond: the test
// takes the probes off at the next Scan by renaming the file away (no process runs it, the path names nothing) and
// puts them back by renaming it home. The agent has scanned once and is closed when the test ends.
func newDetachingAgent(t *testing.T) (a *Agent, bin string) {
	t.Helper()
	bin = filepath.Join(t.TempDir(), "target")
	copyInPlace(t, buildTarget(t, false), bin)
	a = newAgentWith(t, Config{Grace: time.Nanosecond}, bin)
	a.Scan()
	return a, bin
}

// onlyBin is the probes of the one executable a probes, for a test that set up exactly one; the caller holds a.mu.
func onlyBin(t *testing.T, a *Agent) *binProbes {
	t.Helper()
	if len(a.bins) != 1 {
		t.Fatalf("%d executables probed, want 1", len(a.bins))
	}
	var only *binProbes
	for _, b := range a.bins {
		only = b
	}
	return only
}

// TestClientMethodsOutsideTheStandardNineAreOther: the HTTP client probe's method label was the first 7 bytes of
// whatever the target put in Request.Method. A reverse proxy passes on the method its own client sent, so any client
// of such a target made up label values: 6000 made-up methods filled the probe's series maps, and the target's real
// calls after them were dropped (GET 404: 0 of 20), as the server probe's were before 9cd834e. As the server probe,
// the client probe counts the nine standard methods by name and anything else as OTHER; an empty Method is the GET
// net/http sends.
func TestClientMethodsOutsideTheStandardNineAreOther(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	server := startTarget(t, buildTarget(t, false)) // answers the calls; the agent probes only its own copy
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgent(t, bin)
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	c := &http.Client{}
	call := func(query string, status, n int) {
		u := url.QueryEscape(server.base + "/work?status=" + strconv.Itoa(status))
		got := strings.TrimSpace(tg.get(t, c, "GET", "/call?n="+strconv.Itoa(n)+"&url="+u+query))
		if want := fmt.Sprintf(`{"%d":%d}`, status, n); got != want {
			t.Fatalf("/call%s: the target got %s, want %s", query, got, want)
		}
	}
	call("&method=M&distinct=1", 200, 6000) // M0 ... M5999
	call("&method=get", 202, 2)             // methods are case-sensitive: not GET
	call("&method=", 204, 3)
	call("&method=PATCH", 205, 4)
	call("", 404, 20)
	want := map[string]uint64{
		callSeries(tg.pid, "OTHER", 200, false): 6000,
		callSeries(tg.pid, "OTHER", 202, false): 2,
		callSeries(tg.pid, "GET", 204, false):   3,
		callSeries(tg.pid, "PATCH", 205, false): 4,
		callSeries(tg.pid, "GET", 404, false):   20,
	}
	eventually(t, func() (bool, string) { return callCountsAre(a, want) })
}
