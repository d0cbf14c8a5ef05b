package agent

import (
	"os"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReadErrorsIsACounter: shanhai_bpf_read_errors_total, typed counter, counts the scrapes that could not read
// every map since the agent started. It was 1 during a failed scrape and 0 after, so rate() saw resets and two
// failed scrapes read as one.
func TestReadErrorsIsACounter(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := idleAgent(t, reg)

	// A target whose TCP counters cannot be read: the map under them is a closed copy.
	tcpMap := a.sys.tcp.Tcp
	broken, err := tcpMap.Clone()
	if err != nil {
		t.Fatal(err)
	}
	broken.Close()
	setProcs := func(procs map[int]proc) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.procs = procs
	}
	a.mu.Lock()
	a.sys.tcp.Tcp = broken
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.sys.tcp.Tcp = tcpMap
	}()

	var got []float64
	setProcs(map[int]proc{os.Getpid(): {pid: os.Getpid(), exe: "/proc/self/exe"}})
	got = append(got, readErrors(t, reg), readErrors(t, reg))
	setProcs(map[int]proc{})
	got = append(got, readErrors(t, reg))
	if want := []float64{1, 2, 2}; !slices.Equal(got, want) {
		t.Fatalf("shanhai_bpf_read_errors_total after a failed, a failed and a good scrape: %v, want %v", got, want)
	}
}

func readErrors(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	return scrapedCounter(t, g, "shanhai_bpf_read_errors_total")
}

// scrapedCounter is the value of the unlabelled counter name in a scrape of g.
func scrapedCounter(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}
