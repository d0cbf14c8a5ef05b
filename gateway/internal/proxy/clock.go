package proxy

import (
	"sync/atomic"
	"time"
)

// anchorAge bounds how old the wall-clock reading behind readClock may be.
const anchorAge = 100 * time.Millisecond

// anchor is the last full time.Now reading readClock derives its answers from.
var anchor atomic.Pointer[time.Time]

func init() {
	t := time.Now()
	anchor.Store(&t)
}

// readClock is time.Now for the request path, which reads the clock three times
// per request (the exchange's start, the attempt's start, the answer).
// time.Now reads two clocks, the wall clock and the monotonic one; time.Since
// of a reading that has a monotonic part reads only the latter, about half
// the cost (55 against 30 ns on the project's 2-core virtual machines). So
// readClock reads the monotonic clock and adds the time elapsed to the anchor,
// which time.Now refreshes once it is anchorAge old.
//
// The monotonic part is exact, so durations and deadlines (the attempt's
// latency, the time left, the request's duration) are as time.Now's. The
// wall part can lag a step of the wall clock by up to anchorAge and drift
// from it by the clock's slew over that time (NTP: at most 50 µs), far
// below what its readers resolve: token expiry in seconds with a leeway,
// limit leases of a second, the retry budget's one-second buckets.
func readClock() time.Time {
	a := anchor.Load()
	d := time.Since(*a)
	if d >= 0 && d < anchorAge {
		return a.Add(d)
	}
	t := time.Now()
	anchor.Store(&t)
	return t
}
