package agent

import (
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
)

// TestDroppedCountersNeverGoBackOnAReadError: a scrape that cannot read one executable's drop counter must not
// report shanhai_bpf_series_dropped_total or shanhai_bpf_call_series_dropped_total lower than the scrape before.
// They used to report what had been summed before the failed read (here the detached executables' drops alone),
// which Prometheus takes for a counter reset: rate() then counts the whole total again as new drops. A counter it
// cannot read is left out of that scrape (shanhai_bpf_read_errors_total says why) and comes back whole.
func TestDroppedCountersNeverGoBackOnAReadError(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := idleAgent(t, reg)

	spec, err := httpserver.LoadBpf()
	if err != nil {
		t.Fatal(err)
	}
	newMap := specMaps(t, spec)
	ncpu := possibleCPUs(t)
	// counter is a drop counter (a single-entry per-CPU array) holding 3 on every CPU, and a closed copy of it.
	counter := func() (good, broken *ebpf.Map) {
		good = newMap("series_dropped")
		if err := good.Put(uint32(0), slices.Repeat([]uint64{3}, ncpu)); err != nil {
			t.Fatal(err)
		}
		return good, closedClone(t, good)
	}
	serverGood, serverBroken := counter()
	callGood, callBroken := counter()
	// An executable probed by the HTTP server and HTTP client probes, its maps made here: only their drop counters
	// hold anything.
	b := &binProbes{exe: "/fake/target", refused: map[string]string{},
		http:        &httpserver.BpfMaps{Requests: newMap("requests"), RedSlots: newMap("red_slots"), SeriesDropped: serverGood},
		callDropped: map[string]*ebpf.Map{"httpclient": callGood}}
	id := binID{size: -1}
	func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.bins[id] = b
		a.droppedRetired = 5 // executables detached earlier
		a.callDroppedRetired["httpclient"] = 5
	}()
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.bins, id)
	})

	want := float64(5 + 3*ncpu)
	before := droppedCounters(t, reg)
	if before.server != want || before.call != want {
		t.Fatalf("before the failed read: series dropped %v, httpclient call series dropped %v; want %v each", before.server, before.call, want)
	}
	setMaps := func(server, call *ebpf.Map) {
		a.mu.Lock()
		defer a.mu.Unlock()
		b.http.SeriesDropped, b.callDropped["httpclient"] = server, call
	}
	setMaps(serverBroken, callBroken)
	during := droppedCounters(t, reg)
	if during.server >= 0 && during.server < want {
		t.Errorf("shanhai_bpf_series_dropped_total went back from %v to %v when one executable's counter could not be read", want, during.server)
	}
	if during.call >= 0 && during.call < want {
		t.Errorf("shanhai_bpf_call_series_dropped_total{probe=\"httpclient\"} went back from %v to %v when one executable's counter could not be read", want, during.call)
	}
	if during.errors < 1 {
		t.Errorf("shanhai_bpf_read_errors_total = %v after a scrape that could not read a counter, want at least 1", during.errors)
	}
	setMaps(serverGood, callGood)
	if after := droppedCounters(t, reg); after.server != want || after.call != want {
		t.Errorf("after the maps read again: series dropped %v, httpclient call series dropped %v; want %v each", after.server, after.call, want)
	}
}

// dropped is what one scrape says of the drop counters; -1: the series is absent from that scrape.
type dropped struct{ server, call, errors float64 }

func droppedCounters(t *testing.T, g prometheus.Gatherer) dropped {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	d := dropped{-1, -1, -1}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "shanhai_bpf_series_dropped_total":
				d.server = m.GetCounter().GetValue()
			case "shanhai_bpf_read_errors_total":
				d.errors = m.GetCounter().GetValue()
			case "shanhai_bpf_call_series_dropped_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "probe" && l.GetValue() == "httpclient" {
						d.call = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return d
}

// specMaps returns a maker of the maps of spec, each made empty on its own (no program loaded, no probe attached)
// and closed when the test ends: tests that hand the agent maps they filled themselves make them so, to set a
// counter or a series exactly without running a target.
func specMaps(t *testing.T, spec *ebpf.CollectionSpec) func(name string) *ebpf.Map {
	return func(name string) *ebpf.Map {
		t.Helper()
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			t.Fatalf("map %s: %v", name, err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
}

// possibleCPUs is the number of CPUs a per-CPU map holds a copy for.
func possibleCPUs(t *testing.T) int {
	t.Helper()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// closedClone is a handle to m's map that is already closed: the agent cannot read through it, as it could not read
// a map whose read fails, while m itself stays readable to put back afterwards.
func closedClone(t *testing.T, m *ebpf.Map) *ebpf.Map {
	t.Helper()
	c, err := m.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return c
}

// idleAgent is an agent that probes nothing (its one target does not exist) and has scanned once, its collector
// registered on reg: tests hand it maps they made and filled themselves, and read what a scrape makes of them.
func idleAgent(t *testing.T, reg prometheus.Registerer) *Agent {
	t.Helper()
	a := newAgent(t, "/nonexistent/target")
	a.Scan()
	reg.MustRegister(a.Collector())
	return a
}
