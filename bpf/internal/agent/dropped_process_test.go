package agent

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shanhai-dev/shanhai/bpf/probe/goruntime"
)

// TestProcessSeriesDroppedAreCounted is TestCallSeriesDroppedAreCounted for the maps keyed by process: with the
// runtime probe's stw_begin, stw and goroutines and the TCP probe's tcp shrunk to two entries (processEntries) and
// one-entry slot tables, most of eight processes find no room, and what they lose must be counted, not vanish:
// pauses and goroutine creations counted plus shanhai_bpf_runtime_series_dropped_total{series} equal the runtime's
// own counts exactly (the runtime probe's maps are this executable's alone). The tcp map is the whole machine's, so
// other processes' connections may be in its drops too: there every dial (an open and its close) a target was not
// counted for must be among shanhai_bpf_tcp_series_dropped_total.
func TestProcessSeriesDroppedAreCounted(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	const procs, dials = 8, 2
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{slotEntries: 1, goroutinesByUprobe: true, processEntries: 2}, bin)
	a.Scan()
	ln := dialSink(t)
	tgs := startTargets(t, bin, procs)
	a.Scan()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	number := func(tg *target, path string) uint64 {
		n, err := strconv.ParseUint(strings.TrimSpace(tg.get(t, c, "GET", path)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	dial := "/dial?n=" + strconv.Itoa(dials) + "&addr=" + url.QueryEscape(ln.Addr().String())
	for _, tg := range tgs {
		tg.get(t, c, "GET", dial)
		tg.get(t, c, "GET", "/gc?n=3")
	}
	// The runtime's own counts once the process is done: /created counts its own request's goroutine, and nothing
	// after it makes a pause or starts a goroutine (as in TestProcessSeriesAreNotLost).
	var pauses, created uint64
	for _, tg := range tgs {
		pauses += number(tg, "/pauses")
		created += number(tg, "/created")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		var stw, goroutines, unopened uint64
		for _, tg := range tgs {
			stw += s.STW[tg.pid].Count
			goroutines += s.Goroutines[tg.pid]
			if got := s.TCP[tg.pid].Active; got < dials {
				unopened += dials - got
			}
		}
		m, err := gatherCounters(reg)
		if err != nil {
			return false, err.Error()
		}
		rtStw := m[`shanhai_bpf_runtime_series_dropped_total{series="stw"}`]
		rtGo := m[`shanhai_bpf_runtime_series_dropped_total{series="goroutines"}`]
		tcpDropped := m[`shanhai_bpf_tcp_series_dropped_total`]
		ok := stw < pauses && stw+rtStw == pauses && goroutines < created && goroutines+rtGo == created &&
			unopened > 0 && tcpDropped >= 2*unopened
		return ok, fmt.Sprintf("pauses: counted %d + dropped %d, runtime %d; goroutines: counted %d + dropped %d, runtime %d; "+
			"tcp: %d dials not counted (an open and a close each), %d dropped; want some of each dropped and every one of them counted as dropped",
			stw, rtStw, pauses, goroutines, rtGo, created, unopened, tcpDropped)
	})
}

// gatherCounters returns the counters reg exposes, by name and labels as the text format writes them.
func gatherCounters(reg *prometheus.Registry) (map[string]uint64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil {
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			out[name] = uint64(m.GetCounter().GetValue())
		}
	}
	return out, nil
}

// shanhai_bpf_runtime_series_dropped_total must not go back when an executable's probes come off, as
// TestCallSeriesDroppedSurvivesDetach for the call probes: the agent carries a detached runtime probe's count. The
// kernel counters are set directly here; TestProcessSeriesDroppedAreCounted shows that the probe fills them. (The
// TCP probe's count needs no such care: it is loaded once for the agent's life.)
func TestRuntimeSeriesDroppedSurvivesDetach(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	a, bin := newDetachingAgent(t)
	ncpu := possibleCPUs(t)
	// set writes stw drops and goroutines drops on each CPU into the runtime probe of the one executable probed.
	set := func(stw, goroutines uint64) {
		t.Helper()
		a.mu.Lock()
		defer a.mu.Unlock()
		b := onlyBin(t, a)
		if b.rt == nil {
			t.Fatalf("%s: no runtime probe (probes %v)", b.exe, b.probes)
		}
		for key, n := range []uint64{stw, goroutines} {
			if err := b.rt.RuntimeDropped.Put(uint32(key), slices.Repeat([]uint64{n}, ncpu)); err != nil {
				t.Fatal(err)
			}
		}
	}
	dropped := func() map[string]uint64 {
		t.Helper()
		n, err := a.RuntimeSeriesDropped()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	set(3, 5)
	first := dropped()
	if want := map[string]uint64{"stw": 3 * uint64(ncpu), "goroutines": 5 * uint64(ncpu)}; !maps.Equal(first, want) {
		t.Fatalf("dropped %v, want %v", first, want)
	}
	away := bin + ".away" // no process runs the file and the path names nothing: the probes come off
	if err := os.Rename(bin, away); err != nil {
		t.Fatal(err)
	}
	a.Scan()
	if n := func() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.bins) }(); n != 0 {
		t.Fatalf("the probes did not come off: %d executables probed", n)
	}
	if n := dropped(); !maps.Equal(n, first) {
		t.Fatalf("%v dropped after the probes came off, want the %v before", n, first)
	}
	if err := os.Rename(away, bin); err != nil {
		t.Fatal(err)
	}
	startTarget(t, bin)
	a.Scan()
	set(1, 0)
	if n, want := dropped(), map[string]uint64{"stw": first["stw"] + uint64(ncpu), "goroutines": first["goroutines"]}; !maps.Equal(n, want) {
		t.Fatalf("%v dropped after the probes were put back and dropped a pause on each CPU, want %v", n, want)
	}
}

// TestRuntimeAndTCPDroppedNeverGoBackOnAReadError is TestDroppedCountersNeverGoBackOnAReadError for
// shanhai_bpf_runtime_series_dropped_total and shanhai_bpf_tcp_series_dropped_total: a scrape that cannot read a
// counter whole leaves it out (shanhai_bpf_read_errors_total says why) rather than report less than before, which
// Prometheus would take for a reset; the next scrape that reads it reports it whole.
func TestRuntimeAndTCPDroppedNeverGoBackOnAReadError(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := idleAgent(t, reg)
	spec, err := goruntime.LoadBpf()
	if err != nil {
		t.Fatal(err)
	}
	newMap := specMaps(t, spec)
	ncpu := possibleCPUs(t)
	// An executable probed by the runtime probe, its maps made here: only its drop counters hold anything, 3 pauses
	// and 4 goroutines on every CPU, beside 5 of each from executables detached earlier.
	rtGood := newMap("runtime_dropped")
	for key, n := range []uint64{3, 4} {
		if err := rtGood.Put(uint32(key), slices.Repeat([]uint64{n}, ncpu)); err != nil {
			t.Fatal(err)
		}
	}
	b := &binProbes{exe: "/fake/target", refused: map[string]string{}, rt: &goruntime.BpfMaps{
		Stw: newMap("stw"), StwBegin: newMap("stw_begin"), StwHistSlots: newMap("stw_hist_slots"), StwSlots: newMap("stw_slots"),
		Goroutines: newMap("goroutines"), GoroutineSlots: newMap("goroutine_slots"), RuntimeDropped: rtGood}}
	id := binID{size: -1}
	tcpGood := func() *ebpf.Map { a.mu.Lock(); defer a.mu.Unlock(); return a.sys.tcp.TcpDropped }()
	// This agent's own TCP counter, 7 on every CPU, so that a lower value would show.
	if err := tcpGood.Put(uint32(0), slices.Repeat([]uint64{7}, ncpu)); err != nil {
		t.Fatal(err)
	}
	func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.bins[id] = b
		a.runtimeDroppedRetired = [len(runtimeDropSeries)]uint64{5, 5}
	}()
	setMaps := func(rt, tcp *ebpf.Map) {
		a.mu.Lock()
		defer a.mu.Unlock()
		b.rt.RuntimeDropped, a.sys.tcp.TcpDropped = rt, tcp
	}
	t.Cleanup(func() {
		setMaps(rtGood, tcpGood) // the agent closes its own
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.bins, id)
	})
	const (
		stw        = `shanhai_bpf_runtime_series_dropped_total{series="stw"}`
		goroutines = `shanhai_bpf_runtime_series_dropped_total{series="goroutines"}`
		tcp        = `shanhai_bpf_tcp_series_dropped_total`
		errs       = `shanhai_bpf_read_errors_total`
	)
	scrape := func() map[string]uint64 {
		t.Helper()
		m, err := gatherCounters(reg)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := scrape()
	if before[stw] != 5+3*uint64(ncpu) || before[goroutines] != 5+4*uint64(ncpu) {
		t.Fatalf("before the failed read: %v; want %d pauses and %d goroutines dropped", before, 5+3*ncpu, 5+4*ncpu)
	}
	if before[tcp] < 7*uint64(ncpu) {
		t.Fatalf("before the failed read: %s %d, want at least %d", tcp, before[tcp], 7*ncpu)
	}
	setMaps(closedClone(t, rtGood), closedClone(t, tcpGood))
	during := scrape()
	for _, name := range []string{stw, goroutines, tcp} {
		if n, ok := during[name]; ok && n < before[name] {
			t.Errorf("%s went back from %d to %d when its counter could not be read", name, before[name], n)
		}
	}
	if during[errs] < 1 {
		t.Errorf("%s = %d after a scrape that could not read a counter, want at least 1", errs, during[errs])
	}
	setMaps(rtGood, tcpGood)
	after := scrape()
	for _, name := range []string{stw, goroutines, tcp} {
		if after[name] < before[name] {
			t.Errorf("after the maps read again: %s %d, want at least the %d before", name, after[name], before[name])
		}
	}
}
