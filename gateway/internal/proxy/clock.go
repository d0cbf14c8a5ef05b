package proxy

import "time"

// readAfter is time.Now for the request path's readings after its first:
// the attempt's start and the answer. start is that first reading, the
// exchange's (NewExchange's time.Now). time.Now reads two clocks, the wall
// clock and the monotonic one; time.Since of a reading that carries the
// monotonic clock reads only the latter, which costs about half as much
// (bench/README.md, ninth pass).
//
// The result's monotonic part is exact, so the durations and deadlines
// taken from it (the attempt's latency, the time left told upstream, the
// request's duration, the deadline check) are time.Now's. Its wall part is
// start's plus the time elapsed, which misses a step of the wall clock
// during the request: nothing reads it. What does read a wall clock (the
// token cache against exp) reads start's, a full reading; the event
// loop's deadline (start plus the timeout) is placed by its monotonic part. A reading derived from a
// shared, older one instead (7579b0cd's anchor, renewed every 100 ms) took
// a clock step, or a machine's suspend (the monotonic clock stops, the wall
// clock does not), whole into those: an hour forward made every request of
// the next 100 ms time out on the event loop at once.
func readAfter(start time.Time) time.Time {
	return start.Add(time.Since(start))
}
