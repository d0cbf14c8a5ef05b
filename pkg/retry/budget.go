package retry

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const budgetBuckets = 10

// Budget caps retries at ratio × requests seen in the last window, plus a
// floor of minPerSec per second so that a quiet service can still retry at
// all. It is shared by every call to one upstream and safe for concurrent
// use. The window slides in window/10 steps.
//
// Request, called for every request, takes no lock: each bucket is one
// atomic word holding its step and both counters, so counting a request is
// one CAS (and a bucket that rolled over is reset in the same CAS). The
// gateway counted every request under a mutex that both event loops
// contended for. Withdraw, called only after a failure, takes the lock so
// that concurrent retries cannot all pass one check of the cap.
type Budget struct {
	ratio float64
	floor float64 // minPerSec × window seconds
	step  int64   // nanos per bucket
	// The steps are counted from origin on the monotonic clock: on the wall
	// clock (UnixNano) a step of the system time, an NTP correction or a
	// restored VM, moved every bucket out of the window at once, and the
	// window's retries were allowed again in the middle of an outage.
	origin  time.Time
	elapsed func() time.Duration // monotonic time since origin; a test replaces it
	mu      sync.Mutex           // serialises Withdraw
	// Word layout: step (low stepBits of the step number) | requests
	// (reqBits) | retries (retryBits). Counters saturate (67M requests and
	// 262k retries per bucket; saturated requests only make the budget
	// stricter). The step is compared modulo 2^stepBits, which could only
	// confuse a bucket untouched for exactly a multiple of 2^20 steps (12
	// days at the default 1s step).
	bucket [budgetBuckets]atomic.Uint64
}

const (
	stepBits  = 20
	reqBits   = 26
	retryBits = 18
	stepMask  = 1<<stepBits - 1
	reqMax    = 1<<reqBits - 1
	retryMax  = 1<<retryBits - 1
)

func packSlot(step, requests, retries uint64) uint64 {
	return step<<(reqBits+retryBits) | requests<<retryBits | retries
}

func unpackSlot(w uint64) (step, requests, retries uint64) {
	return w >> (reqBits + retryBits), w >> retryBits & reqMax, w & retryMax
}

// NewBudget returns a retry budget, typically NewBudget(0.2, 3, 10*time.Second). A ratio that is not a number counts
// as 0 (the floor only): compared with NaN the cap never held, so every retry passed.
func NewBudget(ratio float64, minPerSec int, window time.Duration) *Budget {
	if window <= 0 {
		window = 10 * time.Second
	}
	if math.IsNaN(ratio) {
		ratio = 0
	}
	origin := time.Now()
	return &Budget{
		ratio:   ratio,
		floor:   float64(minPerSec) * window.Seconds(),
		step:    max(1, int64(window)/budgetBuckets),
		origin:  origin,
		elapsed: func() time.Duration { return time.Since(origin) },
	}
}

// epoch is the step a reading elapsed after origin falls in. A reading
// from before origin (a request that began before its route's budget was
// made) counts in the first step: a negative step would index no bucket.
func (b *Budget) epoch(elapsed time.Duration) int64 {
	return max(0, int64(elapsed)) / b.step
}

// Request records one original (non-retry) request.
func (b *Budget) Request() { b.add(b.epoch(b.elapsed()), 1, 0) }

// RequestAt is Request for a caller that has read the clock already (the
// gateway reads it once per request for every step that needs it). The
// budget moves in window/10 steps, so a reading taken a few microseconds
// earlier counts the same. now must be a reading of time.Now, which
// carries the monotonic clock that Sub measures it on.
func (b *Budget) RequestAt(now time.Time) {
	b.add(b.epoch(now.Sub(b.origin)), 1, 0)
}

// Withdraw takes one retry from the budget, reporting false (and taking
// nothing) when the window's retries are already at the cap. A caller that
// may still decide not to send the retry once the budget allowed it takes
// it with Take instead, to give it back.
func (b *Budget) Withdraw() bool {
	_, ok := b.Take()
	return ok
}

// Withdrawal is one retry taken from a Budget by Take: the step it was
// charged to, for Refund. The zero Withdrawal refunds nothing.
type Withdrawal struct {
	b     *Budget
	epoch int64
}

// Take is Withdraw, returning what it took so that it can be refunded.
// A retry is taken before the caller knows whether it can be sent (the
// budget is asked first so that a refused retry fails fast, before any
// backoff, balancer pick or breaker trial), and whatever stops it after
// that must give it back with Refund.
func (b *Budget) Take() (Withdrawal, bool) {
	epoch, ok := b.withdraw()
	if !ok {
		return Withdrawal{}, false
	}
	return Withdrawal{b: b, epoch: epoch}, true
}

// Refund gives back a retry Take allowed that was never sent: its caller
// went away during the backoff (Do), or no upstream could take it (a
// breaker open, a concurrency limit full, no instance, no time left). The
// budget caps the retries an upstream gets; one charged but not sent was
// refused to another caller, and in an outage, where most retries are
// stopped that way, the window's retries ran out on retries that never
// happened. Refund once per Take, and only for a retry not sent.
func (w Withdrawal) Refund() {
	if w.b != nil {
		w.b.refund(w.epoch)
	}
}

// withdraw takes one retry, also telling the step it was charged to.
func (b *Budget) withdraw() (epoch int64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	epoch = b.epoch(b.elapsed())
	requests, retries := b.totals(epoch)
	if float64(retries+1) > b.ratio*float64(requests)+b.floor {
		return epoch, false
	}
	b.add(epoch, 0, 1)
	return epoch, true
}

// refund takes one retry back out of epoch's bucket. A retry whose bucket
// has moved on since is out of the window already: there is nothing to
// give back.
func (b *Budget) refund(epoch int64) {
	cur := uint64(epoch) & stepMask
	slot := &b.bucket[epoch%budgetBuckets]
	for {
		old := slot.Load()
		step, req, ret := unpackSlot(old)
		if step != cur || ret == 0 {
			return
		}
		if slot.CompareAndSwap(old, packSlot(step, req, ret-1)) {
			return
		}
	}
}

// add counts requests and retries in epoch's bucket, clearing it first if
// it last held an older step.
func (b *Budget) add(epoch int64, requests, retries uint64) {
	cur := uint64(epoch) & stepMask
	slot := &b.bucket[epoch%budgetBuckets]
	for {
		old := slot.Load()
		step, req, ret := unpackSlot(old)
		if step != cur {
			req, ret = 0, 0
		}
		req, ret = min(req+requests, reqMax), min(ret+retries, retryMax)
		if slot.CompareAndSwap(old, packSlot(cur, req, ret)) {
			return
		}
	}
}

// totals sums the buckets whose step lies within the window ending at epoch.
func (b *Budget) totals(epoch int64) (requests, retries int) {
	cur := uint64(epoch) & stepMask
	for i := range b.bucket {
		step, req, ret := unpackSlot(b.bucket[i].Load())
		if (cur-step)&stepMask < budgetBuckets {
			requests += int(req)
			retries += int(ret)
		}
	}
	return requests, retries
}
