package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func uniq() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "test-" + hex.EncodeToString(b)
}

// Two replicas leasing from one Redis budget never admit more than it
// holds, whatever the lease size.
func TestLeasesNeverExceedTheSharedBudget(t *testing.T) {
	rdb := redisClient(t)
	for _, burst := range []int{5, 1000} {
		name := uniq()
		r := Rate{Count: burst, Period: time.Hour, Burst: burst} // no refill during the test
		a := New(rdb, name, r, 2, slog.Default())
		b := New(rdb, name, r, 2, slog.Default())
		if burst == 1000 && a.leaseSize(r) <= 1 {
			t.Fatalf("large limit leases %d token(s) per Redis call", a.leaseSize(r))
		}
		allowed := 0
		for i := range 3 * burst {
			l := a
			if i%3 == 0 {
				l = b
			}
			d, err := l.Allow(context.Background(), []byte("k"))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				allowed++
			} else if d.RetryAfter <= 0 {
				t.Fatalf("denied without RetryAfter: %+v", d)
			}
		}
		// Unspent leases may leave a little budget unused, never overspend it.
		if allowed > burst || allowed < burst-2*a.leaseSize(r) {
			t.Fatalf("burst %d: two replicas admitted %d", burst, allowed)
		}
	}
}

func TestRateChangesAtRunTime(t *testing.T) {
	rdb := redisClient(t)
	l := New(rdb, uniq(), Rate{}, 1, slog.Default())
	for range 100 {
		if d, _ := l.Allow(context.Background(), []byte("k")); !d.Allowed {
			t.Fatal("an off limit denied")
		}
	}
	l.SetRate(Rate{Count: 2, Period: time.Hour})
	n := 0
	for range 5 {
		if d, _ := l.Allow(context.Background(), []byte("k")); d.Allowed {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("after SetRate(2/h) admitted %d of 5", n)
	}
}

// With Redis unreachable the limit still holds, locally, at limit/replicas.
func TestFallsBackToLocalBucketWhenRedisIsDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	l := New(rdb, uniq(), Rate{Count: 10, Period: time.Hour}, 2, slog.New(slog.DiscardHandler))
	n := 0
	for range 20 {
		if d, _ := l.Allow(context.Background(), []byte("k")); d.Allowed {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("fallback admitted %d, want 5 (10 / 2 replicas)", n)
	}
}

// The RateLimit policy's window (Period*burst/Count) of rates the
// configuration accepts: the product overflowed int64 to 0 or less and the
// gateway dropped RateLimit-Policy.
func TestWindowOfEveryAcceptedRate(t *testing.T) {
	for _, c := range []struct {
		r    Rate
		want time.Duration
	}{
		{Rate{Count: 100, Period: time.Second, Burst: 200}, 2 * time.Second},
		{Rate{Count: 3, Period: time.Second}, time.Second},
		{Rate{Count: 1, Period: time.Hour, Burst: 10_000_000}, maxWindow}, // 1141 years
		{Rate{Count: math.MaxInt64, Period: time.Second}, time.Second},
		{Rate{Count: 1, Period: math.MaxInt64, Burst: math.MaxInt64}, maxWindow},
	} {
		if got := c.r.window(); got != c.want {
			t.Errorf("%+v: window %v, want %v", c.r, got, c.want)
		}
	}
}
