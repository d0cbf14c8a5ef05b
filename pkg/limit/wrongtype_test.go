package limit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A key of the limit that holds another type in Redis (left there by hand or
// by another program) is that key's problem, not Redis's: its requests are
// decided by the local share, logged (at most once a minute) and counted with reason=wrongtype, while
// every other key stays on the shared limit. Redis answered WRONGTYPE, which
// was taken for Redis refusing the limiter, so one such key put every client
// on limit ÷ replicas for a cool-down each time it was asked.
func TestRedisKeyOfTheWrongTypeStaysThatKeysProblem(t *testing.T) {
	rdb := redisClient(t)
	ctx := context.Background()
	name := fmt.Sprintf("wrongtype-%d", time.Now().UnixNano())
	poisoned := "rate:shanhai:" + name + ":poisoned" // redis_rate's prefix, then Allow's key
	if err := rdb.RPush(ctx, poisoned, "not a rate").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Del(context.Background(), poisoned).Err() })

	var logs bytes.Buffer
	// Burst 20 across 4 replicas: Limit 20 from Redis, 5 from the local share.
	l := NewRedis(rdb, Rate{Count: 100, Period: time.Minute, Burst: 20}, 4,
		Name(name), Logger(slog.New(slog.NewJSONHandler(&logs, nil))))
	for i := range 3 {
		d, err := l.Allow(ctx, "poisoned")
		if err != nil {
			t.Fatalf("decision %d on the key of the wrong type: %v", i, err)
		}
		if !d.Allowed || d.Limit != 5 {
			t.Fatalf("decision %d on the key of the wrong type %+v, want the local share's (limit 5)", i, d)
		}
	}
	d, err := l.Allow(ctx, "healthy")
	if err != nil {
		t.Fatal(err)
	}
	if d.Limit != 20 || l.Degraded() {
		t.Fatalf("another key decided with limit %d, degraded %v: want Redis's 20, not degraded", d.Limit, l.Degraded())
	}
	if got := metricValueWith(t, "shanhai.limit.fallback.decisions", name, "wrongtype"); got != 3 {
		t.Fatalf("fallback counter with reason=wrongtype %d, want 3", got)
	}
	if n := strings.Count(logs.String(), "WRONGTYPE"); n != 1 {
		t.Fatalf("logged the key %d times, want once:\n%s", n, logs.String())
	}
	// The keys are client addresses and account names: the log gives the
	// pattern to scan for, not the key.
	if pattern := "rate:shanhai:" + name + ":*"; !strings.Contains(logs.String(), pattern) || strings.Contains(logs.String(), poisoned) {
		t.Fatalf("the log should give the pattern %s and not the key:\n%s", pattern, logs.String())
	}
}
