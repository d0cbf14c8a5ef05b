package proxy

import (
	"testing"
	"time"
)

// readClock's monotonic part is exact: a reading falls between the
// time.Now readings taken around it, so durations and deadlines computed
// from it are time.Now's. Its wall part is the anchor's plus the monotonic
// time elapsed; the bound below is loose (a second) only so that a step
// of the machine's wall clock during the test does not fail it.
func TestReadClock(t *testing.T) {
	for range 10_000 {
		before := time.Now()
		r := readClock()
		after := time.Now()
		if r.Before(before) || r.After(after) {
			t.Fatalf("readClock %v outside [%v, %v]", r, before, after)
		}
		if w := r.Round(0); w.Before(before.Round(0).Add(-time.Second)) || w.After(after.Round(0).Add(time.Second)) {
			t.Fatalf("readClock's wall reading %v far from time.Now's %v", w, before.Round(0))
		}
	}
}

// An anchor anchorAge old or older, or one from the monotonic future (only
// a test can plant that), is replaced by a fresh time.Now reading, which is
// the answer.
func TestReadClockReanchors(t *testing.T) {
	prev := anchor.Load()
	t.Cleanup(func() { anchor.Store(prev) })
	for _, off := range []time.Duration{-anchorAge, -time.Hour, time.Second} {
		old := time.Now().Add(off)
		anchor.Store(&old)
		before := time.Now()
		r := readClock()
		a := anchor.Load()
		if a == &old || r != *a || r.Before(before) {
			t.Fatalf("anchor %v off: readClock %v, anchor %v; want a fresh reading, stored", off, r, *a)
		}
	}
}

// BenchmarkReadClock: what one of the request path's clock reads costs,
// against time.Now.
func BenchmarkReadClock(b *testing.B) {
	var sink time.Time
	b.Run("time.Now", func(b *testing.B) {
		for b.Loop() {
			sink = time.Now()
		}
	})
	b.Run("readClock", func(b *testing.B) {
		for b.Loop() {
			sink = readClock()
		}
	})
	_ = sink
}
