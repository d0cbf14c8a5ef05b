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

// The same through the loop: a request sent upstream (send places its
// deadline) meets a sweep whose reading has the wall clock an hour on. In
// Unix nanoseconds it was answered 504 there and then; the conversion
// alone (above) does not show that send and sweep both use it.
func TestSweepAfterWallClockStepKeepsRequestInFlight(t *testing.T) {
	m := newMemLoop(t, Options{})
	m.fromClient("GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
	if !m.cl.busy || m.cl.deadline == 0 || len(m.up.out) == 0 {
		t.Fatalf("the request is not at the upstream (busy %v, deadline %d, sent %q)", m.cl.busy, m.cl.deadline, m.up.out)
	}
	m.l.sweep(wallclock.Stepped(time.Now(), time.Hour))
	if !m.cl.busy || len(m.client.out) != 0 {
		t.Fatalf("a sweep after a wall clock step of 1h, a minute's route timeout not reached: the client got %q, want nothing yet", m.client.out)
	}
}
