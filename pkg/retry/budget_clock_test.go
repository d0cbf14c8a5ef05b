package retry

import (
	"testing"
	"time"
)

// The budget's window runs on the monotonic clock. On the wall clock
// (UnixNano), a step of the system time (an NTP correction, a restored VM)
// moved every bucket out of the window at once, and the retries the window
// had spent were allowed again in the middle of an outage. Here a window
// passes on the budget's clock while microseconds pass on the wall: a
// budget reading the wall instead stays exhausted, and counts a request
// read an hour ahead on the monotonic clock in a step it never reaches.
func TestBudgetWindowFollowsTheMonotonicClock(t *testing.T) {
	b := NewBudget(1, 1, time.Second) // one retry per window, and one more per request
	clk := clockOf(b)
	once := func(when string) {
		t.Helper()
		if !b.Withdraw() || b.Withdraw() {
			t.Fatalf("%s: want exactly one retry allowed", when)
		}
	}

	once("a fresh budget")
	clk.t = clk.t.Add(time.Second)
	once("a window later on the monotonic clock")

	// RequestAt measures a time.Now reading from the budget's origin on the
	// monotonic clock too, so it lands in the step Withdraw reads.
	clk.t = clk.t.Add(time.Hour)
	b.RequestAt(clk.t)
	n := 0
	for b.Withdraw() {
		n++
	}
	if n != 2 {
		t.Fatalf("%d retries after a request RequestAt counted at the budget's now, want 2 (the floor's and the request's)", n)
	}

	// A reading from before the budget was made counts in its first step
	// (a negative step indexed no bucket: a panic).
	b.RequestAt(b.origin.Add(-time.Minute - 150*time.Millisecond))
}
