package breaker

import (
	"sync/atomic"
	"time"
)

// window counts successes and failures over the last len(slots) steps of
// time. Each slot is one atomic word holding the step it belongs to and its
// two counters, so recording is a single CAS and a slot that has rolled
// over is reset in the same CAS — no lock, no lost update.
//
// Word layout: step (low 24 bits of the step number) | ok (20 bits) | fail
// (20 bits). Counters saturate at about a million per slot; the step is
// compared modulo 2^24, which could only confuse a slot untouched for
// exactly a multiple of 2^24 steps (months at the default 1s step).
type window struct {
	step  int64 // nanoseconds per slot
	slots []atomic.Uint64
}

const (
	cntBits  = 20
	cntMax   = 1<<cntBits - 1
	stepBits = 24
	stepMask = 1<<stepBits - 1
)

func newWindow(length time.Duration, n int) window {
	return window{step: max(1, int64(length)/int64(n)), slots: make([]atomic.Uint64, n)}
}

func pack(step, ok, fail uint64) uint64 {
	return step<<(2*cntBits) | ok<<cntBits | fail
}

func unpack(w uint64) (step, ok, fail uint64) {
	return w >> (2 * cntBits), w >> cntBits & cntMax, w & cntMax
}

func (w *window) add(now int64, failed bool) {
	cur := uint64(now/w.step) & stepMask
	slot := &w.slots[uint64(now/w.step)%uint64(len(w.slots))]
	for {
		old := slot.Load()
		step, ok, fail := unpack(old)
		if step != cur {
			ok, fail = 0, 0
		}
		if failed {
			fail = min(fail+1, cntMax)
		} else {
			ok = min(ok+1, cntMax)
		}
		if slot.CompareAndSwap(old, pack(cur, ok, fail)) {
			return
		}
	}
}

// totals sums the slots whose step lies within the window ending at now.
func (w *window) totals(now int64) (ok, fail int64) {
	cur := uint64(now/w.step) & stepMask
	for i := range w.slots {
		step, o, f := unpack(w.slots[i].Load())
		if (cur-step)&stepMask < uint64(len(w.slots)) {
			ok += int64(o)
			fail += int64(f)
		}
	}
	return ok, fail
}

// clear forgets everything, so a closed breaker starts with a clean window.
func (w *window) clear() {
	for i := range w.slots {
		w.slots[i].Store(0) // empty counts: whatever step they claim, they add nothing
	}
}
