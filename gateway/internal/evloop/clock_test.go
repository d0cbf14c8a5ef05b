package evloop

import (
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/wallclock"
)

// The loop's times (a request's deadline, the sweep's now) are placed on
// the monotonic clock: a step of the wall clock between a request's start
// and a sweep (NTP, a VM's resume) leaves its time left as it was. In Unix
// nanoseconds, an hour forward timed every request in flight out at the
// next sweep, and an hour back gave each an hour more.
func TestLoopClockIgnoresWallClockSteps(t *testing.T) {
	s := New(Options{})
	start := time.Now()
	deadline := s.at(start.Add(time.Minute)) // as send places a request's
	for _, step := range []time.Duration{time.Hour, -time.Hour} {
		later := wallclock.Stepped(start.Add(time.Second), step) // a sweep's reading
		if left := time.Duration(deadline - s.at(later)); left != 59*time.Second {
			t.Errorf("a second into a one-minute deadline, after a wall clock step of %v: %v left, want 59s", step, left)
		}
	}
}
