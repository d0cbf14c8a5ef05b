package limit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestPerKeyRateWithinFivePercentOverTenThousandDecisions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rate  rate.Limit
		burst int
	}{
		{"100/s burst 10", 100, 10},
		{"7/s burst 1", 7, 1},
		{"1000/s burst 50", 1000, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			l := PerKey(tc.rate, tc.burst, WithClock(clk.now))
			rng := rand.New(rand.NewPCG(1, 2))
			start := clk.t
			// Offer about 50x the rate with irregular gaps. (Far above the
			// rate, because a full bucket wastes refill: with burst 1 and
			// modest overload a token bucket admits noticeably less than r.)
			meanGap := float64(time.Second) / float64(tc.rate) / 50
			allowed := 0
			for range 10_000 {
				clk.advance(time.Duration((0.5 + rng.Float64()) * meanGap))
				d, err := l.Allow(context.Background(), "k")
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					allowed++
				}
			}
			elapsed := clk.t.Sub(start).Seconds()
			want := float64(tc.rate)*elapsed + float64(tc.burst)
			if diff := math.Abs(float64(allowed)-want) / want; diff > 0.05 {
				t.Fatalf("allowed %d over %.2fs, want %.0f ±5%% (off by %.1f%%)", allowed, elapsed, want, diff*100)
			}
		})
	}
}

func TestPerKeyKeysAreIndependentAndDecisionExplainsItself(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := PerKey(10, 2, WithClock(clk.now)) // a token per 100ms
	ctx := context.Background()
	for i := range 2 {
		if d, _ := l.Allow(ctx, "a"); !d.Allowed || d.Remaining != 1-i {
			t.Fatalf("request %d of burst: %+v", i, d)
		}
	}
	d, _ := l.Allow(ctx, "a")
	if d.Allowed {
		t.Fatal("third request within burst 2 allowed")
	}
	if d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond {
		t.Fatalf("RetryAfter %v, want (0, 100ms]", d.RetryAfter)
	}
	if d.ResetAfter != 200*time.Millisecond || d.Window != 200*time.Millisecond || d.Limit != 2 {
		t.Fatalf("decision %+v, want reset 200ms, window 200ms, limit 2", d)
	}
	if d, _ := l.Allow(ctx, "b"); !d.Allowed {
		t.Fatal("key b limited by key a's usage")
	}
	clk.advance(d.RetryAfter)
	if d, _ := l.Allow(ctx, "a"); !d.Allowed {
		t.Fatalf("denied after waiting RetryAfter: %+v", d)
	}
}

func TestPerKeyForgetsIdleKeys(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := PerKey(1, 5, WithClock(clk.now), WithIdleTTL(time.Minute))
	ctx := context.Background()
	for i := range 1000 {
		_, _ = l.Allow(ctx, fmt.Sprint("ip-", i))
	}
	if n := l.Len(); n != 1000 {
		t.Fatalf("remembered %d keys, want 1000", n)
	}
	clk.advance(2 * time.Minute)
	const fresh = 2000 // enough to land in all 64 shards, so each sweeps
	for i := range fresh {
		_, _ = l.Allow(ctx, fmt.Sprint("new-", i))
	}
	if n := l.Len(); n != fresh {
		t.Fatalf("after idle TTL remembered %d keys, want only the %d new ones", n, fresh)
	}
}

func TestPerKeyIdleTTLNeverShorterThanRefill(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	// 1 token/s, burst 10: refill takes 10s, so a 1s TTL must be raised to 10s,
	// or forgetting a drained key would hand it a fresh burst.
	l := PerKey(1, 10, WithClock(clk.now), WithIdleTTL(time.Second))
	ctx := context.Background()
	for range 10 {
		_, _ = l.Allow(ctx, "k")
	}
	clk.advance(3 * time.Second)
	allowed := 0
	for range 10 {
		if d, _ := l.Allow(ctx, "k"); d.Allowed {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("after 3s of a drained 1/s bucket allowed %d, want 3", allowed)
	}
}

func TestPerKeyMaxKeysBoundsMemory(t *testing.T) {
	l := PerKey(1, 1, WithMaxKeys(64*10))
	for i := range 20_000 {
		_, _ = l.Allow(context.Background(), fmt.Sprint("spray-", i))
	}
	if n := l.Len(); n > 64*10 {
		t.Fatalf("remembered %d keys, cap is %d", n, 64*10)
	}
}

// Two keys far under a small cap keep their own buckets even when they hash
// to one shard. With WithMaxKeys(64..127) sized as one key per shard, such
// keys evicted each other at every call and each got a fresh burst: 200 of
// 200 allowed.
func TestPerKeySmallCapKeepsKeysSharingAShard(t *testing.T) {
	start := time.Now()
	for _, n := range []int{32, 64, 100, 127, 500, 1000} {
		l := PerKey(1, 1, WithMaxKeys(n), WithClock(func() time.Time { return start })) // no refill
		a, b := "client-a", ""
		for i := 0; b == ""; i++ {
			if k := fmt.Sprint("client-b-", i); maphash.String(l.seed, k)&l.mask == maphash.String(l.seed, a)&l.mask {
				b = k
			}
		}
		allowed := 0
		for range 100 {
			for _, k := range []string{a, b} {
				if d, _ := l.Allow(context.Background(), k); d.Allowed {
					allowed++
				}
			}
		}
		if allowed != 2 {
			t.Errorf("WithMaxKeys(%d), burst 1, no refill: %d of 200 calls by two keys on one shard allowed, want 2", n, allowed)
		}
	}
}

func BenchmarkPerKeyAllow(b *testing.B) {
	lim := PerKey(1e9, 1000)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("10.0.", i/256, ".", i%256)
	}
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(keys))
		for pb.Next() {
			_, _ = lim.Allow(ctx, keys[i%len(keys)])
			i++
		}
	})
}

// BenchmarkPerKeyAllowOneKey is the worst case for contention: every
// goroutine hits the same bucket.
func BenchmarkPerKeyAllowOneKey(b *testing.B) {
	lim := PerKey(1e9, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = lim.Allow(ctx, "10.0.0.1")
		}
	})
}

func TestPerKeyConcurrentFirstUseSharesOneBucket(t *testing.T) {
	frozen := time.Unix(1_700_000_000, 0)
	for range 20 {
		l := PerKey(1, 100, WithClock(func() time.Time { return frozen }))
		var allowed atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if d, _ := l.Allow(context.Background(), "new-key"); d.Allowed {
						allowed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if n := allowed.Load(); n != 100 {
			t.Fatalf("allowed %d with the clock frozen and burst 100: the key got more than one bucket", n)
		}
	}
}

func TestPerKeyEdgeRates(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	ctx := context.Background()
	t.Run("zero rate allows burst then none while remembered", func(t *testing.T) {
		l := PerKey(0, 3, WithClock(clk.now))
		for i := range 3 {
			if d, _ := l.Allow(ctx, "k"); !d.Allowed || d.Remaining != 2-i {
				t.Fatalf("request %d: %+v", i, d)
			}
		}
		for range 50 { // an attempt a second stays under the one-minute idle TTL
			clk.advance(time.Second)
			if d, _ := l.Allow(ctx, "k"); d.Allowed || d.RetryAfter <= 0 {
				t.Fatalf("zero-rate bucket refilled: %+v", d)
			}
		}
	})
	t.Run("zero burst allows nothing", func(t *testing.T) {
		l := PerKey(100, 0, WithClock(clk.now))
		clk.advance(time.Hour)
		if d, _ := l.Allow(ctx, "k"); d.Allowed {
			t.Fatalf("burst 0 allowed a request: %+v", d)
		}
	})
	t.Run("infinite rate allows everything", func(t *testing.T) {
		l := PerKey(rate.Inf, 5, WithClock(clk.now))
		for range 1000 {
			if d, _ := l.Allow(ctx, "k"); !d.Allowed || d.Remaining != 5 {
				t.Fatalf("rate.Inf: %+v", d)
			}
		}
	})
	t.Run("fractional interval keeps its rate", func(t *testing.T) {
		// 3/s is an interval of 333,333,333.3ns. Offered more than it
		// admits, a draining bucket must hand out exactly burst + 3 per
		// second over a day: the rounding must not drift by a request.
		l := PerKey(3, 3, WithClock(clk.now))
		allowed := 0
		for range 24 * 3600 * 10 {
			clk.advance(100 * time.Millisecond)
			if d, _ := l.Allow(ctx, "k"); d.Allowed {
				allowed++
			}
		}
		if want := 3 + 24*3600*3; allowed < want-1 || allowed > want {
			t.Fatalf("allowed %d in a day at 3/s burst 3, want %d", allowed, want)
		}
	})
}

// BenchmarkPerKeyFlood is a flood of keys never seen before against a set at
// its cap (WithMaxKeys, 65,536: 1,024 a shard): each new key evicts one.
func BenchmarkPerKeyFlood(b *testing.B) {
	const maxKeys = 1 << 16
	lim := PerKey(1, 10, WithMaxKeys(maxKeys))
	ctx := context.Background()
	for i := range maxKeys {
		_, _ = lim.Allow(ctx, "fill-"+strconv.Itoa(i))
	}
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = "flood-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	for _, k := range keys {
		_, _ = lim.Allow(ctx, k)
	}
}
