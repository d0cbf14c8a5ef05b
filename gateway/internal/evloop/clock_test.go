package evloop

import (
	"testing"
	"time"
	"unsafe"
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
		later := wallStepped(start.Add(time.Second), step) // a sweep's reading
		if left := time.Duration(deadline - s.at(later)); left != 59*time.Second {
			t.Errorf("a second into a one-minute deadline, after a wall clock step of %v: %v left, want 59s", step, left)
		}
	}
}

// wallStepped is t as read after a step of the wall clock: the same
// monotonic reading, the wall part moved by step. No exported API makes
// one (Add moves both), so it writes the wall seconds of time.Time's
// layout (wall: hasMonotonic, 33 bits of seconds since 1885, 30 of
// nanoseconds; ext: the monotonic reading), and checks that it did.
func wallStepped(t time.Time, step time.Duration) time.Time {
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	const hasMonotonic = 1 << 63
	u := t
	p := (*layout)(unsafe.Pointer(&u))
	if p.wall&hasMonotonic == 0 {
		panic("wallStepped: t has no monotonic reading")
	}
	p.wall += uint64(int64(step/time.Second)) << 30
	if !u.Round(0).Equal(t.Round(0).Add(step)) || u.Sub(t) != 0 {
		panic("wallStepped: time.Time's layout is not the one assumed")
	}
	return u
}
