package agent

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A target named by name is matched by any file of that name any user runs, and each executable probed costs its
// probes' maps in the agent's memory cgroup: copies of a Go binary under a target's name in enough directories had
// the agent load maps for every one until its memory limit killed it (found by review). Config.MaxExecutables caps
// how many are probed at once: one over it stays unprobed, is counted once in shanhai_bpf_executables_refused_total
// however many scans see it, is listed as unprobed, and is probed once a slot frees.
func TestExecutablesOverTheCapAreRefused(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := buildTarget(t, false)
	const name = "bpf-capped-svc"
	var tgs []*target
	for range 3 { // three files (inodes) under one name
		p := filepath.Join(t.TempDir(), name)
		copyFile(t, bin, p)
		tgs = append(tgs, startTarget(t, p))
	}
	a := newAgentWith(t, Config{MaxExecutables: 2, Grace: time.Nanosecond}, name)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	for range 3 {
		a.Scan()
	}
	if len(a.bins) != 2 {
		t.Fatalf("%d executables probed, want the cap, 2", len(a.bins))
	}
	var refused *target
	for _, tg := range tgs {
		for _, got := range a.Targets() {
			if got.PID == tg.pid && got.Unprobed[UnprobedAll] != "" && len(got.Probes) == 0 {
				refused = tg
			}
		}
	}
	if refused == nil {
		t.Fatalf("targets %+v: want one unprobed for the cap", a.Targets())
	}
	if got := scrapedCounter(t, reg, "shanhai_bpf_executables_refused_total"); got != 1 {
		t.Errorf("shanhai_bpf_executables_refused_total = %v after three scans, want 1", got)
	}

	for _, tg := range tgs {
		if tg != refused {
			tg.stop() // its executable is detached at once (Grace 1ns), so the refused one gets its slot
			break
		}
	}
	a.Scan()
	a.Scan()
	for _, got := range a.Targets() {
		if got.PID == refused.pid && (len(got.Probes) == 0 || len(got.Unprobed) != 0) {
			t.Errorf("target %+v: want probed once a slot freed", got)
		}
	}
	if len(a.bins) != 2 {
		t.Errorf("%d executables probed, want 2", len(a.bins))
	}
}
