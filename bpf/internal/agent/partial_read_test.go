package agent

import (
	"os"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shanhai-dev/shanhai/bpf/internal/hist"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
)

// TestSeriesNeverGoBackOnAReadError: a series the agent sums from two maps (a server series in the fallback hash and
// in the per-CPU slots) must not be reported with one part when the other cannot be read. The scrape used to report
// what it had read before the failure, here 2 of a series' 5 requests, which Prometheus takes for a counter reset
// (rate() then counts the 5 again as new). An executable whose maps cannot all be read is left out of that scrape
// (shanhai_bpf_read_errors_total counts it) and comes back whole.
func TestSeriesNeverGoBackOnAReadError(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := idleAgent(t, reg)

	spec, err := httpserver.LoadBpf()
	if err != nil {
		t.Fatal(err)
	}
	newMap := specMaps(t, spec)
	ncpu := possibleCPUs(t)
	pid := os.Getpid() // alive, so its slot copies are read
	key := httpserver.BpfRedKey{Tgid: uint32(pid), Status: 200, Method: [8]int8{'G', 'E', 'T'}}
	requests, slots := newMap("requests"), newMap("red_slots")
	if err := requests.Put(key, &hist.Hist{Count: 2}); err != nil {
		t.Fatal(err)
	}
	copies := make([]redSlot, ncpu)
	copies[0] = redSlot{Key: key, Hist: hist.Hist{Count: 3}}
	if err := slots.Put(uint32(0), copies); err != nil {
		t.Fatal(err)
	}
	broken := closedClone(t, slots)

	id := binID{size: -1}
	b := &binProbes{exe: "/fake/target", refused: map[string]string{}, callDropped: map[string]*ebpf.Map{},
		http: &httpserver.BpfMaps{Requests: requests, RedSlots: slots, SeriesDropped: newMap("series_dropped")}}
	func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.bins[id] = b
		a.procs = map[int]proc{pid: {pid: pid, exe: b.exe, bin: id}}
	}()
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.bins, id)
		a.procs = map[int]proc{}
	})
	setSlots := func(m *ebpf.Map) {
		a.mu.Lock()
		defer a.mu.Unlock()
		b.http.RedSlots = m
	}

	if got := serverCount(t, reg, pid); got != 5 {
		t.Fatalf("before the failed read: %v requests, want 5", got)
	}
	setSlots(broken)
	if got := serverCount(t, reg, pid); got >= 0 && got != 5 {
		t.Errorf("a scrape that could not read the slots reported %v requests of the series, want 5 or none", got)
	}
	if n := readErrors(t, reg); n < 1 {
		t.Errorf("shanhai_bpf_read_errors_total = %v after a failed read", n)
	}
	setSlots(slots)
	if got := serverCount(t, reg, pid); got != 5 {
		t.Errorf("after the slots read again: %v requests, want 5", got)
	}
}

// serverCount is the request count of pid's GET 200 series in one scrape; -1: absent.
func serverCount(t *testing.T, g prometheus.Gatherer, pid int) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shanhai_bpf_http_server_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["pid"] == strconv.Itoa(pid) && labels["method"] == "GET" && labels["status"] == "200" {
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}
