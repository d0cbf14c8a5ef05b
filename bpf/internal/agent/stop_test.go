package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestStopDuringFirstScan: a SIGTERM (Run's context ending) while the first scan attaches many targets stops the scan
// before the next attach. Each attach takes seconds, and Run waited for every one of them before it returned. The
// attaches are a stand-in here (Config.fakeAttach) that ends Run's context during the first: twenty path targets,
// one attach.
func TestStopDuringFirstScan(t *testing.T) {
	dir := t.TempDir()
	var targets []string
	for i := range 20 {
		p := filepath.Join(dir, "slow"+strconv.Itoa(i))
		if err := os.WriteFile(p, []byte("not attached for real"), 0o755); err != nil {
			t.Fatal(err)
		}
		targets = append(targets, p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	cfg := Config{fakeAttach: func(path, exe string, id binID, o attachOpts) (*binProbes, error) {
		calls.Add(1)
		cancel() // the SIGTERM comes during this attach
		<-o.ctx.Done()
		return nil, o.ctx.Err()
	}}
	a := newAgentWith(t, cfg, targets...)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("Run still running a minute after its context ended (%d attaches)", calls.Load())
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d attaches after the context ended during the first, want none", n-1)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.failed) != 0 {
		t.Errorf("an attach the stop cut short is recorded as the file's failure: %v", a.failed)
	}
}

// TestAttachStopsBetweenProbes: an attach whose context has ended attaches no further probe and leaves nothing
// attached (what it did attach is closed with the rest).
func TestAttachStopsBetweenProbes(t *testing.T) {
	requireRoot(t)
	bin := buildTarget(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b, err := attachBinary(bin, bin, binID{}, attachOpts{ctx: ctx, httpUprobe: true, exitProgs: true})
	if !errors.Is(err, context.Canceled) || b != nil {
		t.Fatalf("attach with an ended context = %v, %v; want no probes and context.Canceled", b, err)
	}
}

// cutAfter is a context that ends once its Err has been asked n times: a stop that comes during an attach, after the
// probes checked before it.
type cutAfter struct {
	context.Context
	n     atomic.Int32
	atCut int // the test process's open descriptors when it ended
	t     *testing.T
}

func (c *cutAfter) Err() error {
	if c.n.Add(-1) == -1 {
		c.atCut = openFDs(c.t)
	}
	if c.n.Load() < 0 {
		return context.Canceled
	}
	return nil
}

// TestAttachCutShortDetachesWhatAttached: a stop between two probes of one attach takes off the probes already on the
// file: every uprobe, link, program and map the attach opened is closed (counted as the process's descriptors).
func TestAttachCutShortDetachesWhatAttached(t *testing.T) {
	requireRoot(t)
	bin := buildTarget(t, false)
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer closes a descriptor while they are counted
	before := openFDs(t)
	ctx := &cutAfter{Context: context.Background(), t: t}
	ctx.n.Store(2) // the HTTP server and Go runtime probes attach; the stop comes before the HTTP client's
	b, err := attachBinary(bin, bin, binID{}, attachOpts{ctx: ctx, httpUprobe: true, exitProgs: true, log: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, context.Canceled) || b != nil {
		t.Fatalf("attach stopped after two probes = %v, %v; want no probes and context.Canceled", b, err)
	}
	if ctx.atCut <= before {
		t.Fatalf("%d descriptors open when the stop came, %d before: no probe had attached, the test proves nothing", ctx.atCut, before)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after the stopped attach returned, %d before (%d when it stopped)", after, before, ctx.atCut)
	}
}
