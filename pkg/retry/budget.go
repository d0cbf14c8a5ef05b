package retry

import (
	"sync"
	"time"
)

const budgetBuckets = 10

// Budget caps retries at ratio × requests seen in the last window, plus a
// floor of minPerSec per second so that a quiet service can still retry at
// all. It is shared by every call to one upstream and safe for concurrent
// use. The window slides in window/10 steps.
type Budget struct {
	ratio  float64
	floor  float64 // minPerSec × window seconds
	step   int64   // nanos per bucket
	now    func() time.Time
	mu     sync.Mutex
	bucket [budgetBuckets]slot
}

type slot struct {
	epoch             int64 // which window/10 step of time this slot counts
	requests, retries int
}

// NewBudget returns a retry budget, typically NewBudget(0.2, 3, 10*time.Second).
func NewBudget(ratio float64, minPerSec int, window time.Duration) *Budget {
	if window <= 0 {
		window = 10 * time.Second
	}
	return &Budget{
		ratio: ratio,
		floor: float64(minPerSec) * window.Seconds(),
		step:  max(1, int64(window)/budgetBuckets),
		now:   time.Now,
	}
}

// Request records one original (non-retry) request.
func (b *Budget) Request() {
	b.mu.Lock()
	b.current().requests++
	b.mu.Unlock()
}

// Withdraw takes one retry from the budget, reporting false (and taking
// nothing) when the window's retries are already at the cap.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.current()
	requests, retries := b.totals()
	if float64(retries+1) > b.ratio*float64(requests)+b.floor {
		return false
	}
	cur.retries++
	return true
}

// current returns the bucket for now, clearing it if it last held an older
// step. Call with mu held.
func (b *Budget) current() *slot {
	epoch := b.now().UnixNano() / b.step
	c := &b.bucket[epoch%budgetBuckets]
	if c.epoch != epoch {
		c.epoch, c.requests, c.retries = epoch, 0, 0
	}
	return c
}

func (b *Budget) totals() (requests, retries int) {
	epoch := b.now().UnixNano() / b.step
	for i := range b.bucket {
		if c := &b.bucket[i]; epoch-c.epoch < budgetBuckets {
			requests += c.requests
			retries += c.retries
		}
	}
	return requests, retries
}
