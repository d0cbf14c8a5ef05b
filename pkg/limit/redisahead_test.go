package limit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A key whose bucket is full again an hour after Redis's now, as a key written by a primary whose clock was an hour
// ahead reads on the one that took over (or after Redis's clock stepped back), was refused with a Retry-After of an
// hour, and so was every client that had used part of its burst before the step, until Redis's clock caught up. No
// answer on one steady clock lies further ahead than the refill time: such a key is decided by the local share,
// counted (reason=clock) and warned of once, while a key drained on Redis's clock stays Redis's to refuse.
func TestRedisKeyAheadOfRedisClockIsNotLockedOut(t *testing.T) {
	rdb := redisClient(t)
	ctx := context.Background()
	name := fmt.Sprintf("ahead-%d", time.Now().UnixNano())
	ahead := "rate:shanhai:" + name + ":ahead" // redis_rate's prefix, then Allow's key
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// The script's time: seconds since 2017-01-01, as a float.
	tat := float64(now.Add(time.Hour).UnixMicro()-1483228800*1_000_000) / 1e6
	if err := rdb.Set(ctx, ahead, strconv.FormatFloat(tat, 'f', -1, 64), time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Del(context.Background(), ahead).Err() })

	var logs bytes.Buffer
	// Burst 20 across 4 replicas: Limit 20 from Redis, 5 from the local share.
	l := NewRedis(rdb, Rate{Count: 100, Period: time.Minute, Burst: 20}, 4,
		Name(name), Logger(slog.New(slog.NewJSONHandler(&logs, nil))))
	for i := range 3 {
		d, err := l.Allow(ctx, "ahead")
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed || d.Limit != 5 || d.RetryAfter > time.Minute {
			t.Fatalf("decision %d on the key ahead of Redis's clock %+v, want the local share's (limit 5)", i, d)
		}
	}
	for i := range 21 {
		d, err := l.Allow(ctx, "drained")
		if err != nil {
			t.Fatal(err)
		}
		if d.Limit != 20 || d.Allowed != (i < 20) {
			t.Fatalf("decision %d on a key drained on Redis's clock %+v, want Redis's (limit 20), the 21st refused", i, d)
		}
	}
	if l.Degraded() {
		t.Fatal("degraded: Redis answered every call")
	}
	if got := metricValueWith(t, "shanhai.limit.fallback.decisions", name, "clock"); got != 3 {
		t.Fatalf("fallback counter with reason=clock %d, want 3", got)
	}
	if n := strings.Count(logs.String(), "refill time allows"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, logs.String())
	}
}
