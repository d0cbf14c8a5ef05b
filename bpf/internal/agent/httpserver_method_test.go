package agent

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// send makes every request in reqs ({method, path}) on 4 connections.
func (tg *target) send(t *testing.T, reqs [][2]string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	jobs := make(chan [2]string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for r := range jobs {
				tg.get(t, c, r[0], r[1])
			}
		})
	}
	for _, r := range reqs {
		jobs <- r
	}
	close(jobs)
	wg.Wait()
}

// The method label is the token the client sent: in uprobe mode any client could make up thousands of label values,
// fill the series maps and crowd real requests out (found by review). Methods outside the nine standard ones are
// counted as OTHER, so 5000 made-up methods make one series and GETs after them are all counted.
func TestServerMethodsOutsideTheStandardNineAreOther(t *testing.T) {
	t.Parallel()
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgent(t, bin)
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	var reqs [][2]string
	for i := range 5000 {
		reqs = append(reqs, [2]string{fmt.Sprintf("X%05d", i), "/work"})
	}
	// Tokens a prefix or an extension of a standard method away from one, and a standard method's 7-byte cut.
	for _, m := range []string{"GE", "GETS", "get", "PROPFIND", "OPTIONSX", "DELET"} {
		reqs = append(reqs, [2]string{m, "/work"})
	}
	tg.send(t, reqs)
	c := &http.Client{}
	for range 50 {
		tg.get(t, c, "GET", "/work?status=201")
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"} {
		tg.get(t, c, m, "/work?status=202")
	}
	want := fmt.Sprint(map[string]uint64{"GET 201": 50, "OTHER 200": 5006, "POST 202": 1, "PUT 202": 1, "DELETE 202": 1,
		"PATCH 202": 1, "OPTIONS 202": 1, "HEAD 202": 1})
	eventually(t, func() (bool, string) { return serverCountsAre(a, tg.pid, want) })
}

// A series that finds no room in the maps is not counted, and shanhai_bpf_series_dropped_total says how many requests
// that lost (found by review: record() dropped them silently). 6 methods x 800 statuses make 4800 series of one
// request each, more than the hash map's 4096 entries and a one-entry slot table (slotEntries) per CPU hold on any
// machine with fewer than 700 CPUs: every request is either counted or dropped, and some are dropped.
func TestServerSeriesDroppedAreCounted(t *testing.T) {
	t.Parallel()
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, Config{slotEntries: 1}, bin)
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	var reqs [][2]string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		for s := 200; s < 1000; s++ {
			reqs = append(reqs, [2]string{m, "/work?status=" + strconv.Itoa(s)})
		}
	}
	tg.send(t, reqs)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	eventually(t, func() (bool, string) {
		snap, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		counted := snap.ServerTotal(tg.pid)
		mfs, err := reg.Gather()
		if err != nil {
			return false, err.Error()
		}
		dropped := -1.0
		for _, mf := range mfs {
			if mf.GetName() == "shanhai_bpf_series_dropped_total" {
				dropped = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		ok := counted < uint64(len(reqs)) && counted+uint64(dropped) == uint64(len(reqs))
		return ok, fmt.Sprintf("counted %d + dropped %v, want %d with some dropped", counted, dropped, len(reqs))
	})
}

// shanhai_bpf_series_dropped_total summed the live probes' kernel counters, so when an executable's probe came off
// (no process ran it for BPF_DETACH_GRACE) the counter went back by that executable's drops, and a re-attached probe
// started again from zero (found by review): a counter must not go back. The count is carried in user space: after
// the detach it keeps what was dropped, and after a re-attach it adds the new probe's drops to it.
func TestSeriesDroppedSurvivesDetach(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := filepath.Join(t.TempDir(), "target")
	copyInPlace(t, buildTarget(t, false), bin)
	a, err := New(Config{Targets: []string{bin}, Grace: time.Nanosecond, slotEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var reqs [][2]string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		for s := 200; s < 1000; s++ {
			reqs = append(reqs, [2]string{m, "/work?status=" + strconv.Itoa(s)})
		}
	}
	// overflow serves reqs from a fresh target process and returns what the agent dropped before and after.
	overflow := func() (before, after uint64) {
		before = seriesDropped(t, a)
		tg := startTarget(t, bin)
		a.Scan()
		tg.send(t, reqs)
		eventually(t, func() (bool, string) {
			snap, err := a.Snapshot()
			if err != nil {
				return false, err.Error()
			}
			after = seriesDropped(t, a)
			counted := snap.ServerTotal(tg.pid)
			return counted < uint64(len(reqs)) && counted+after-before == uint64(len(reqs)),
				fmt.Sprintf("counted %d + dropped %d, want %d with some dropped", counted, after-before, len(reqs))
		})
		tg.stop()
		return before, after
	}
	a.Scan()
	_, first := overflow()

	away := bin + ".away" // no process runs the file and the path names nothing: the probe comes off
	if err := os.Rename(bin, away); err != nil {
		t.Fatal(err)
	}
	a.Scan()
	if ts := a.Targets(); len(ts) != 0 || len(a.bins) != 0 {
		t.Fatalf("after the target exited and its file went: targets %v, %d executables probed; want none", ts, len(a.bins))
	}
	if n := seriesDropped(t, a); n != first {
		t.Fatalf("shanhai_bpf_series_dropped_total %d after the probe came off, want the %d dropped before", n, first)
	}
	if err := os.Rename(away, bin); err != nil {
		t.Fatal(err)
	}
	if before, _ := overflow(); before != first {
		t.Fatalf("shanhai_bpf_series_dropped_total %d after the probe was put back, want the %d dropped before", before, first)
	}
}

// seriesDropped is shanhai_bpf_series_dropped_total as a scrape of a reads it.
func seriesDropped(t *testing.T, a *Agent) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	return uint64(scrapedCounter(t, reg, "shanhai_bpf_series_dropped_total"))
}
