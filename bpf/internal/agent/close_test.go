package agent

import (
	"errors"
	"net/http"
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestScrapeAfterCloseIsAnError: cmd/agent waits for Run, which closes the agent, before it shuts its HTTP server
// down, so a scrape can come after Close. Snapshot then dereferenced the closed TCP probe and panicked, in the
// registry's collector goroutine, which nothing recovers: a SIGTERM during a scrape ended the agent with a stack
// trace and exit status 2 instead of 0. A closed agent answers with an error and no series.
func TestScrapeAfterCloseIsAnError(t *testing.T) {
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgent(t, bin)
	tg := startTarget(t, bin)
	a.Scan()
	drive(t, tg, 3)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	noPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("%s after Close panicked: %v", what, p)
			}
		}()
		f()
	}
	noPanic("Snapshot", func() {
		if _, err := a.Snapshot(); !errors.Is(err, errClosed) {
			t.Errorf("Snapshot after Close: err = %v, want %v", err, errClosed)
		}
	})
	noPanic("Scan", a.Scan)
	noPanic("Collect", func() {
		ch := make(chan prometheus.Metric, 1024)
		a.Collector().Collect(ch)
		close(ch)
		for m := range ch {
			if d := m.Desc().String(); d == descServer.String() || d == descTCPOpened.String() {
				t.Errorf("closed agent exported %s", d)
			}
		}
	})
}

// TestAgentRestartsLeaveNothingOpen starts and closes an agent on a running target again and again, as restarts
// of the agent in one process would: each Close must give back every descriptor the agent opened (BPF programs,
// maps, links, perf events for the uprobes and tracepoints, the exits ring, the executable and its lease). A BPF
// object lives only as long as a descriptor or an attachment holds it, and every attachment here is a descriptor,
// so the process's descriptors are the count; the machine's program and map ids are not, since the kernel frees
// them after grace periods that took over a minute here. Sequential: it counts the process's descriptors and turns
// the garbage collector off.
func TestAgentRestartsLeaveNothingOpen(t *testing.T) {
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	tg := startTarget(t, bin)
	c := &http.Client{}
	cycle := func(i int) {
		a, err := New(Config{Targets: []string{bin}})
		if err != nil {
			t.Fatal(err)
		}
		a.Scan()
		if got := a.Targets(); len(got) != 1 || len(got[0].Probes) == 0 {
			a.Close()
			t.Fatalf("cycle %d: targets %+v, want the target probed", i, got)
		}
		tg.get(t, c, "GET", "/work")
		if _, err := a.Snapshot(); err != nil {
			t.Errorf("cycle %d: snapshot: %v", i, err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("cycle %d: close: %v", i, err)
		}
	}
	// Only explicit closes count: the garbage collector's finalizers would close what Close leaks.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	cycle(0) // the runtime's own lazily opened descriptors (netpoller, pidfds) come with the first agent
	c.CloseIdleConnections()
	before := openFDs(t)
	for i := 1; i <= 3; i++ {
		cycle(i)
	}
	c.CloseIdleConnections()
	if after := openFDs(t); after != before {
		t.Errorf("%d fds open after 3 agent restarts, %d before", after, before)
	}
}
