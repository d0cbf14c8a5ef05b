package agent

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A target named by name is attached through /proc/<pid>/exe of the process a scan found. That process may exit
// between the /proc read and the attach, or during it (a short-lived run of the binary: a migration, a crash loop),
// and its pid may be taken by another program. Then the executable the scan found must not be recorded as failed
// (it was, for good: the next process from the same file stayed unprobed with reason "open /proc/N/exe"), nor get
// the other program's file read and probed under its identity (the target's requests went uncounted). The window is
// held open here by doing what Scan does in two steps, with the process gone between them.
func TestTargetGoneBeforeAttach(t *testing.T) {
	requireRoot(t)
	for _, reused := range []bool{false, true} {
		t.Run("reused="+strconv.FormatBool(reused), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "gonesvc")
			copyInPlace(t, buildTarget(t, false), p)
			a := newAgent(t, filepath.Base(p))
			first := startTarget(t, p)
			found := scanProcs(a.cfg.Targets, nil, a.self, nil)
			if len(found) != 1 || found[0].pid != first.pid {
				t.Fatalf("scan found %+v, want pid %d", found, first.pid)
			}
			first.stop()
			if reused {
				// Another Go HTTP server, not a target, on the pid the scan found.
				other := startTargetAt(t, buildNoOpt(t), first.pid)
				defer other.stop()
			}
			a.mu.Lock()
			a.attach(context.Background(), "/proc/"+strconv.Itoa(found[0].pid)+"/exe", found[0].exe, found[0].bin)
			a.mu.Unlock()

			tg := startTarget(t, p)
			a.Scan()
			ts := a.Targets()
			if len(ts) != 1 || ts[0].PID != tg.pid || len(ts[0].Unprobed) != 0 || len(ts[0].Probes) == 0 {
				t.Fatalf("targets = %+v, want pid %d probed", ts, tg.pid)
			}
			c := &http.Client{Timeout: 5 * time.Second}
			for range 5 {
				tg.get(t, c, "GET", "/work?status=201")
			}
			eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 5) })
		})
	}
}
