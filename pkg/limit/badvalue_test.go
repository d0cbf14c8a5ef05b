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

// A key of the limit that holds a string redis_rate cannot read as its
// number is that key's problem too, as one of another type is. A value that
// is no number made the script fail ("bad argument #1 to 'max'"), taken for
// Redis refusing the limiter: every client went to limit ÷ replicas for a
// cool-down each time the key was asked. One that reads as infinite or NaN
// gave nonsense decisions: refused for as long as the key lived with a reset
// of minus 292 years (a RateLimit t= of -9223372036), or allowed with
// MinInt64 remaining. Each is decided by the local share, counted with
// reason=wrongtype and warned of once a minute; other keys stay on Redis.
func TestRedisKeyHoldingNoNumberStaysThatKeysProblem(t *testing.T) {
	rdb := redisClient(t)
	ctx := context.Background()
	for _, value := range []string{"not a number", "", "inf", "-nan", "nan", "1e400"} {
		t.Run(fmt.Sprintf("%q", value), func(t *testing.T) {
			name := fmt.Sprintf("badvalue-%d", time.Now().UnixNano())
			poisoned := "rate:shanhai:" + name + ":poisoned" // redis_rate's prefix, then Allow's key
			if err := rdb.Set(ctx, poisoned, value, time.Minute).Err(); err != nil {
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
					t.Fatalf("decision %d on the key holding %q: %v", i, value, err)
				}
				if !d.Allowed || d.Limit != 5 || d.Remaining != 4-i || d.ResetAfter < 0 {
					t.Fatalf("decision %d on the key holding %q %+v, want the local share's (limit 5, %d left)", i, value, d, 4-i)
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
			if n := strings.Count(logs.String(), "deciding that key locally"); n != 1 {
				t.Fatalf("warned of the key %d times, want once:\n%s", n, logs.String())
			}
			if strings.Contains(logs.String(), poisoned) {
				t.Fatalf("the log names the key, not its pattern:\n%s", logs.String())
			}
		})
	}
}
