package limit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The cool-down after Redis failed, and the spacing of the warnings of a key of the wrong type, are measured on the
// monotonic clock. On the wall clock, one stepped back after Redis failed (an NTP correction, a restored VM) kept
// Redis untried, every client on limit ÷ replicas, and the warnings silent, for as long as the step. Here an hour
// passes on the limiter's clock while seconds pass on the wall: the wall clock, read instead, had gone back an hour.
func TestRedisCooldownAndWarningsFollowTheMonotonicClock(t *testing.T) {
	rdb := redisClient(t)
	ctx := context.Background()
	var logs bytes.Buffer
	// Burst 20 across 4 replicas: Limit 20 from Redis, 5 from the local share.
	l := NewRedis(rdb, Rate{Count: 100, Period: time.Minute, Burst: 20}, 4,
		Name(fmt.Sprintf("clock-%d", time.Now().UnixNano())), Cooldown(time.Hour),
		Logger(slog.New(slog.NewJSONHandler(&logs, nil))))
	var now int64 = 1
	l.clock = func() int64 { return now }
	allow := func() Decision {
		t.Helper()
		d, err := l.Allow(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	l.markDown(ctx, errors.New("redis gave no answer")) // what a failed call does
	if d := allow(); d.Limit != 5 || !l.Degraded() {
		t.Fatalf("within the cool-down: %+v degraded=%v, want the local share (limit 5)", d, l.Degraded())
	}
	now += int64(time.Hour)
	if d := allow(); d.Limit != 20 || l.Degraded() {
		t.Fatalf("an hour later on the monotonic clock: %+v degraded=%v, want Redis tried again (limit 20)", d, l.Degraded())
	}

	for range 2 {
		l.logWrongType(ctx, errors.New("WRONGTYPE Operation against a key holding the wrong kind of value"))
		now += int64(wrongTypeLogEvery)
	}
	if n := strings.Count(logs.String(), "WRONGTYPE"); n != 2 {
		t.Fatalf("warned %d times of a key of the wrong type a minute apart on the monotonic clock, want 2:\n%s", n, logs.String())
	}
}
