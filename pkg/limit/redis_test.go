package limit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisOneLimitSharedByTwoClients(t *testing.T) {
	a, b := redisClient(t), redisClient(t) // two connections, as two replicas would have
	lim := Rate{Count: 10, Period: time.Minute, Burst: 10}
	name := fmt.Sprintf("test-%d", time.Now().UnixNano()) // fresh keys per run
	la := NewRedis(a, lim, 2, Name(name))
	lb := NewRedis(b, lim, 2, Name(name))
	ctx := context.Background()

	allowedA, allowedB := 0, 0
	for i := range 30 {
		l, n := la, &allowedA
		if i%2 == 1 {
			l, n = lb, &allowedB
		}
		d, err := l.Allow(ctx, "user-1")
		if err != nil {
			t.Fatal(err)
		}
		if d.Limit != 10 {
			t.Fatalf("limit %d, want the shared 10 (not a local share)", d.Limit)
		}
		if d.Allowed {
			*n++
		} else if d.RetryAfter <= 0 {
			t.Fatalf("denied without RetryAfter: %+v", d)
		}
	}
	// 10/min refills one token per 6s; the loop takes milliseconds.
	if total := allowedA + allowedB; total != 10 {
		t.Fatalf("two clients admitted %d+%d=%d, want 10 in total", allowedA, allowedB, total)
	}
	if allowedA == 0 || allowedB == 0 {
		t.Fatalf("admissions %d/%d: both clients should have drawn from the shared bucket", allowedA, allowedB)
	}
	if la.Degraded() || lb.Degraded() {
		t.Fatal("degraded with Redis up")
	}
	// A different key is a different bucket.
	if d, _ := la.Allow(ctx, "user-2"); !d.Allowed {
		t.Fatal("user-2 limited by user-1's usage")
	}
}

func TestRedisDownFallsBackToLocalShare(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens here now: every dial is refused
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })

	var logs bytes.Buffer
	name := fmt.Sprintf("down-%d", time.Now().UnixNano()) // the counter is the process's: a fresh name per run
	// 100/min with burst 20 across 4 replicas: each replica alone allows a
	// burst of 5 and 25/min.
	l := NewRedis(rdb, Rate{Count: 100, Period: time.Minute, Burst: 20}, 4,
		Name(name), Logger(slog.New(slog.NewJSONHandler(&logs, nil))))
	allowed := 0
	for range 20 {
		d, err := l.Allow(context.Background(), "k")
		if err != nil {
			t.Fatalf("Redis down must not surface as an error: %v", err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d of 20 with Redis down, want the local share 5 (never unlimited, never zero)", allowed)
	}
	if !l.Degraded() {
		t.Fatal("Degraded() false with Redis down")
	}
	if n := strings.Count(logs.String(), "redis unreachable"); n != 1 {
		t.Fatalf("logged the switch %d times, want once:\n%s", n, logs.String())
	}
	if got := metricValueWith(t, "shanhai.limit.fallback.decisions", name, "unreachable"); got != 20 {
		t.Fatalf("fallback counter with reason=unreachable %d, want 20", got)
	}
}

// The window in the RateLimit-Policy is the time the quota takes to refill, for every rate NewRedis accepts: the
// product Period × Burst overflowed int64 for a large burst over a long period (a negative window, so Middleware
// dropped w, or a wrapped positive one).
func TestRedisWindowOfLargeRates(t *testing.T) {
	rdb := redisClient(t)
	name := fmt.Sprintf("test-window-%d", time.Now().UnixNano())
	for _, tc := range []struct {
		lim  Rate
		want time.Duration
	}{
		{Rate{Count: 10, Period: time.Minute}, time.Minute},
		{Rate{Count: 10_000_000, Period: time.Hour}, time.Hour},
		{Rate{Count: 100, Period: 24 * time.Hour, Burst: 1_000_000}, 10_000 * 24 * time.Hour},
	} {
		d, err := NewRedis(rdb, tc.lim, 1, Name(name)).Allow(context.Background(), fmt.Sprintf("%d/%v:%d", tc.lim.Count, tc.lim.Period, tc.lim.Burst))
		if err != nil {
			t.Fatal(err)
		}
		if d.Window != tc.want {
			t.Errorf("%+v: window %v, want %v", tc.lim, d.Window, tc.want)
		}
	}
}
