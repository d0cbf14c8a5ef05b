package quota

import (
	"log/slog"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/wallclock"
)

// A lease's expiry is on the monotonic clock: a step of the wall clock
// while it runs (NTP, a VM's resume) neither ends it early nor keeps it.
// In Unix nanoseconds, an hour back kept every lease (and denial and
// cool-down) an hour longer: the key spent its tokens with no Redis call.
func TestLeaseClockIgnoresWallClockSteps(t *testing.T) {
	l := New(nil, uniq(), Rate{Count: 10, Period: time.Second}, 1, slog.Default())
	key := []byte("10.0.0.4")
	start := time.Now()
	b := l.bucket(key)
	b.tokens, b.until = 5, l.at(start.Add(LeaseTTL)) // a lease taken at start
	if _, ok := l.AllowLocal(key, wallclock.Stepped(start.Add(LeaseTTL/2), time.Hour)); !ok {
		t.Error("within its lease, after a wall clock step of 1h: asks Redis, want the lease's token")
	}
	if _, ok := l.AllowLocal(key, wallclock.Stepped(start.Add(LeaseTTL+time.Second), -time.Hour)); ok {
		t.Error("a second after its lease expired, after a wall clock step of -1h: decided on the lease, want Redis asked")
	}
}
