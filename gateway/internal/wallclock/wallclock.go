// Package wallclock makes, for tests, the clock readings a step of the
// wall clock (NTP, a VM's resume) produces, which no exported API of the
// time package makes and a test cannot cause without root and a machine
// of its own.
package wallclock

import (
	"time"
	"unsafe"
)

// Stepped is t as read after a step of the wall clock: the same monotonic
// reading, the wall part moved by step (whole seconds). Add moves both, so
// it writes the wall seconds of time.Time's layout (wall: hasMonotonic, 33
// bits of seconds since 1885, 30 of nanoseconds; ext: the monotonic
// reading), and panics if the result is not what it claims, so that a
// change of that layout fails the tests using it rather than passing them.
func Stepped(t time.Time, step time.Duration) time.Time {
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	const hasMonotonic = 1 << 63
	u := t
	p := (*layout)(unsafe.Pointer(&u))
	if p.wall&hasMonotonic == 0 {
		panic("wallclock: t has no monotonic reading")
	}
	p.wall += uint64(int64(step/time.Second)) << 30
	if !u.Round(0).Equal(t.Round(0).Add(step.Truncate(time.Second))) || u.Sub(t) != 0 {
		panic("wallclock: time.Time's layout is not the one assumed")
	}
	return u
}
