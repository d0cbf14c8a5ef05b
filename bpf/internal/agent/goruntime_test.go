package agent

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGoRuntime: forced runtime.GC() calls appear as stop-the-world pauses, and the agent's pause count equals the
// runtime's own (/sched/pauses/total/{gc,other}) because the probes are on the file before the process starts.
// Goroutine creations are read from the runtime's own counters (internal/gocount), or counted by the
// runtime.newproc1 uprobe where those cannot be read.
func TestGoRuntime(t *testing.T) {
	t.Parallel()
	// The uprobe runs give the goroutine counter the compiled slot table, then a one-entry one (slotEntries): the
	// target's pid then hashes past it (63 times in 64) and its counts take the hash-map fallback, which must be as
	// exact.
	for _, run := range []struct {
		name             string
		uprobe, fallback bool
	}{{"memory", false, false}, {"uprobe", true, false}, {"uprobe-fallback", true, true}} {
		t.Run(run.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{goroutinesByUprobe: run.uprobe}
			if run.fallback {
				cfg.slotEntries = 1
			}
			testGoRuntime(t, cfg)
		})
	}
}

// testGoRuntime runs the check with an agent of cfg's settings, on the test's own copy of the target.
func testGoRuntime(t *testing.T, cfg Config) {
	requireRoot(t)
	uprobe := cfg.goroutinesByUprobe
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgentWith(t, cfg, bin)
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	c := &http.Client{}
	a.mu.Lock()
	for _, b := range a.bins {
		if (b.goroutines == nil) != uprobe {
			t.Errorf("%s: goroutines counted by the runtime's counters: %v, want %v", b.exe, b.goroutines != nil, !uprobe)
		}
	}
	a.mu.Unlock()

	pauses := func() uint64 {
		n, err := strconv.ParseUint(strings.TrimSpace(tg.get(t, c, "GET", "/pauses")), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	const gcs = 5
	tg.get(t, c, "GET", "/gc?n="+strconv.Itoa(gcs))
	var stw uint64
	var runtimeN uint64
	eventually(t, func() (bool, string) {
		runtimeN = pauses()
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		h := s.STW[tg.pid]
		stw = h.Count
		return stw == runtimeN, "agent saw " + strconv.FormatUint(stw, 10) + " pauses, the runtime " + strconv.FormatUint(runtimeN, 10)
	})
	after, _ := a.Snapshot()
	h := after.STW[tg.pid]
	delta := h.Sub(before.STW[tg.pid])
	// Each GC cycle stops the world twice (sweep termination, mark termination).
	if delta.Count < 2*gcs {
		t.Errorf("%d forced GCs gave %d pauses, want at least %d", gcs, delta.Count, 2*gcs)
	}
	if p := h.Quantile(1); p <= 0 || p > time.Second {
		t.Errorf("max pause %v: not a plausible stop-the-world", p)
	}
	t.Logf("pauses: agent %d = runtime %d; %d during %d forced GCs, mean %v", stw, runtimeN, delta.Count, gcs, h.Mean())

	const spawn = 1000
	g0 := after.Goroutines[tg.pid]
	tg.get(t, c, "GET", "/spawn?n="+strconv.Itoa(spawn))
	s, _ := a.Snapshot()
	got := s.Goroutines[tg.pid] - g0
	// The request may start a connection goroutine or two of net/http's; the handler starts exactly spawn.
	if got < spawn || got > spawn+20 {
		t.Errorf("goroutines created during /spawn?n=%d: %d", spawn, got)
	}
	t.Logf("goroutines created: %d for %d spawned (%d total)", got, spawn, s.Goroutines[tg.pid])
	if uprobe {
		return
	}
	// Read from the runtime's counters, the count is the runtime's own: between what it reports just before and just
	// after (each request to it starts a goroutine, net/http's background read).
	created := func() uint64 {
		n, err := strconv.ParseUint(strings.TrimSpace(tg.get(t, c, "GET", "/created")), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	r0 := created()
	s, _ = a.Snapshot()
	r1 := created()
	if n := s.Goroutines[tg.pid]; n < r0 || n > r1 {
		t.Errorf("agent counted %d goroutines created; the runtime said %d before and %d after", n, r0, r1)
	}
}
