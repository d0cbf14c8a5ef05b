package limit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A limit whose refill takes longer than maxWindow (73 years), one a century,
// is a real limit: Redis's answers for it are in range and decide, with no
// warning of a key holding no number and no local decision.
func TestRedisLimitRefilledOverACenturyIsDecidedByRedis(t *testing.T) {
	rdb := redisClient(t)
	name := fmt.Sprintf("century-%d", time.Now().UnixNano())
	l := NewRedis(rdb, Rate{Count: 2, Period: 200 * 365 * 24 * time.Hour}, 1, Name(name),
		Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ctx := context.Background()
	for i, want := range []bool{true, true, false} {
		d, err := l.Allow(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != want || l.Degraded() {
			t.Fatalf("decision %d: %+v, degraded %v; want allowed %v from Redis", i, d, l.Degraded(), want)
		}
		if !want && d.RetryAfter < 99*365*24*time.Hour {
			t.Fatalf("refused with RetryAfter %v, want about a century", d.RetryAfter)
		}
	}
	if got := metricValue(t, "shanhai.limit.fallback.decisions", name); got > 0 {
		t.Fatalf("%d decisions made locally, want every one by Redis", got)
	}
}
