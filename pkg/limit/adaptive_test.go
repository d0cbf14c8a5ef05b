package limit

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAdaptiveRefusesBeyondLimit(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 3, Min: 1, Max: 10})
	var rel []func(time.Duration, bool)
	for range 3 {
		r, ok := a.Acquire()
		if !ok {
			t.Fatal("refused within limit")
		}
		rel = append(rel, r)
	}
	if _, ok := a.Acquire(); ok {
		t.Fatal("fourth call admitted with limit 3")
	}
	rel[0](time.Millisecond, false)
	rel[0](time.Millisecond, false) // a second release must not free another slot
	if a.InFlight() != 2 {
		t.Fatalf("in flight %d after one release, want 2", a.InFlight())
	}
}

func TestAdaptiveGrowsUnderHealthyLoadAndBacksOffOncePerRound(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 10, Min: 2, Max: 40, Latency: 100 * time.Millisecond, Backoff: 0.5})
	// Keep the limit fully used with healthy calls: it should climb.
	for range 400 {
		var rel []func(time.Duration, bool)
		for {
			r, ok := a.Acquire()
			if !ok {
				break
			}
			rel = append(rel, r)
		}
		for _, r := range rel {
			r(10*time.Millisecond, false)
		}
	}
	if a.Limit() != 40 {
		t.Fatalf("limit %d after sustained healthy full use, want the max 40", a.Limit())
	}
	// A whole round of slow calls is one congestion event: one halving.
	var rel []func(time.Duration, bool)
	for {
		r, ok := a.Acquire()
		if !ok {
			break
		}
		rel = append(rel, r)
	}
	for _, r := range rel {
		r(time.Second, false)
	}
	if a.Limit() != 20 {
		t.Fatalf("limit %d after one slow round, want 20 (one decrease per round)", a.Limit())
	}
	// Failures in later rounds keep halving down to Min, never below.
	for range 10 {
		r, _ := a.Acquire()
		r(time.Millisecond, true)
	}
	if a.Limit() != 2 {
		t.Fatalf("limit %d after repeated failures, want Min 2", a.Limit())
	}
}

// A forgotten call frees its slot and is no growth signal: Done(false) for
// each of these calls grows the limit from 2 to 10.
func TestAdaptiveForgetFreesTheSlotAndLeavesTheLimit(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 2, Max: 10})
	for range 200 {
		var ts []Ticket
		for {
			tk, ok := a.Admit()
			if !ok {
				break
			}
			ts = append(ts, tk)
		}
		for _, tk := range ts {
			a.Forget(tk)
		}
	}
	if a.Limit() != 2 || a.InFlight() != 0 {
		t.Fatalf("after 200 rounds of forgotten calls at the limit: limit %d, in flight %d; want 2, 0", a.Limit(), a.InFlight())
	}
}

func TestAdaptiveDoesNotGrowWhenIdle(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 10, Max: 100})
	for range 1000 {
		r, _ := a.Acquire() // one at a time: the limit is never in use
		r(time.Millisecond, false)
	}
	if a.Limit() != 10 {
		t.Fatalf("limit grew to %d under light load", a.Limit())
	}
}

func TestAdaptiveGauges(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 7, Name: "gauged"})
	release, _ := a.Acquire()
	if got := metricValue(t, "shanhai.limit.concurrency.limit", "gauged"); got != 7 {
		t.Fatalf("limit gauge %d, want 7", got)
	}
	if got := metricValue(t, "shanhai.limit.concurrency.inflight", "gauged"); got != 1 {
		t.Fatalf("inflight gauge %d, want 1", got)
	}
	release(0, false)
	a.Close()
	if got := metricValue(t, "shanhai.limit.concurrency.limit", "gauged"); got != -1 {
		t.Fatalf("closed limiter still reported: %d", got)
	}
}

func TestAdaptiveNeverExceedsLimitUnderConcurrency(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 5, Max: 5})
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				release, ok := a.Acquire()
				if !ok {
					continue
				}
				n := inUse.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				inUse.Add(-1)
				release(time.Millisecond, (g+i)%7 == 0)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 5 {
		t.Fatalf("%d calls in flight at once with a limit of at most 5", p)
	}
	if a.InFlight() != 0 {
		t.Fatalf("%d still in flight after every release", a.InFlight())
	}
}

// Admit and Done are the allocation-free pair the gateway uses: they count
// calls in flight as Acquire does, and cost no allocation.
func TestAdaptiveTicketsAllocateNothing(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 2, Max: 10})
	t1, ok1 := a.Admit()
	t2, ok2 := a.Admit()
	if _, ok := a.Admit(); !ok1 || !ok2 || ok {
		t.Fatalf("admitted %v %v, then a third: want two of limit 2", ok1, ok2)
	}
	a.Done(t1, time.Millisecond, false)
	if a.InFlight() != 1 {
		t.Fatalf("in flight %d after one Done, want 1", a.InFlight())
	}
	a.Done(t2, time.Millisecond, false)
	if n := testing.AllocsPerRun(100, func() {
		tk, ok := a.Admit()
		if !ok {
			t.Fatal("refused")
		}
		a.Done(tk, time.Millisecond, false)
	}); n != 0 {
		t.Fatalf("Admit+Done allocate %.1f times per call, want 0", n)
	}
}

// BenchmarkAdaptiveAdmit is one admission and its completion, the gateway's
// cost per request (Acquire: the same with a release closure).
func BenchmarkAdaptiveAdmit(b *testing.B) {
	a := NewAdaptive(AdaptiveOptions{Initial: 100, Max: 1000})
	b.Run("ticket", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				t, _ := a.Admit()
				a.Done(t, time.Millisecond, false)
			}
		})
	})
	b.Run("closure", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, _ := a.Acquire()
				r(time.Millisecond, false)
			}
		})
	})
}

// TestAdaptiveOptionsMinAboveMaxIsRefused: a Min above Max (given, or above
// the default Max) cannot be honoured, and before it was taken silently: the
// limit started at Max and the first congestion signal raised it to Min, so
// an overload opened the limiter wider instead of closing it.
func TestAdaptiveOptionsMinAboveMaxIsRefused(t *testing.T) {
	for _, o := range []AdaptiveOptions{{Min: 10, Max: 5}, {Min: 1001}} {
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), "Min") || !strings.Contains(err.Error(), "Max") {
			t.Errorf("%+v: Validate() = %v, want an error naming Min and Max", o, err)
		}
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Min") {
					t.Errorf("%+v: NewAdaptive did not refuse the options (recovered %v)", o, r)
				}
			}()
			a := NewAdaptive(o)
			t.Logf("%+v: limit %d", o, a.Limit())
		}()
	}
	for _, o := range []AdaptiveOptions{{}, {Min: 5, Max: 5}, {Min: 1000}, {Max: 3}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: Validate() = %v, want nil", o, err)
		}
	}
}

// A Backoff that is not a number takes the default like any other out of
// (0, 1): compared with NaN both range checks were false, so it was kept, and
// the first congestion signal made the limit NaN, whose conversion to an
// integer left a limit that admitted nothing (or everything, by platform).
func TestAdaptiveNaNBackoffTakesTheDefault(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 10, Min: 2, Max: 40, Backoff: math.NaN()})
	tk, ok := a.Admit()
	if !ok {
		t.Fatal("first call refused")
	}
	a.Done(tk, time.Millisecond, true)
	if got := a.Limit(); got != 9 { // 10 × the default 0.9
		t.Fatalf("limit after one failure = %d, want 9", got)
	}
	if _, ok := a.Admit(); !ok {
		t.Fatal("a call refused with nothing in flight")
	}
}
