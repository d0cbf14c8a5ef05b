package limit

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// A key is forgotten only once its bucket has surely refilled. Its idle mark
// is refreshed at most every ttl/16, so a sweep that trusted the mark could
// drop a key up to ttl/16 before the bucket was full again, handing a drained
// client a fresh burst.
func TestPerKeyIdleKeyForgottenOnlyWhenFull(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	// 10/s, burst 100: a full refill takes 10s, to which the 1ns TTL is raised.
	l := PerKey(10, 100, WithClock(clk.now), WithIdleTTL(time.Nanosecond))
	ctx := context.Background()
	drain := func() (allowed int) {
		for {
			if d, _ := l.Allow(ctx, "k"); !d.Allowed {
				return allowed
			}
			allowed++
		}
	}
	_, _ = l.Allow(ctx, "k")            // the key's idle mark: 0s
	clk.advance(600 * time.Millisecond) // under ttl/16 = 625ms: the mark stays at 0s
	if n := drain(); n != 100 {
		t.Fatalf("drained %d at 0.6s, want the full 100 (99 left, refilled to the cap)", n)
	}
	// Empty at 0.6s: full again at 10.6s. At 10.3s the bucket holds
	// (10.3 - 0.6) * 10 = 97 tokens, though the mark is 10.3s old.
	clk.advance(9700 * time.Millisecond)
	if n := drain(); n != 97 {
		t.Fatalf("at 10.3s allowed %d, want the 97 refilled (a forgotten key gets a fresh burst of 100)", n)
	}
}

// WithMaxKeys is a true cap below the shard count too: one key per shard
// would already hold 64.
func TestPerKeyMaxKeysUnderShardCount(t *testing.T) {
	for _, n := range []int{1, 10, 63, 64, 100} {
		l := PerKey(1, 1, WithMaxKeys(n))
		for i := range 5000 {
			_, _ = l.Allow(context.Background(), fmt.Sprint("spray-", i))
		}
		if got := l.Len(); got > n || got < n/2 {
			t.Errorf("WithMaxKeys(%d) holds %d keys after 5000 distinct ones", n, got)
		}
	}
}

// An idle TTL near the largest duration ("never forget a key") must not
// wrap the sweep's cutoff around: wrapped, every key looked idle, and a
// full shard dropped all its keys, handing each client a fresh burst,
// instead of evicting one.
func TestPerKeyHugeIdleTTLEvictsOneKeyWhenFull(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := PerKey(0, 1, WithMaxKeys(16), WithIdleTTL(math.MaxInt64), WithClock(clk.now)) // one shard of 16
	ctx := context.Background()
	for i := range 17 {
		clk.advance(time.Second)
		if d, _ := l.Allow(ctx, fmt.Sprint("client-", i)); !d.Allowed {
			t.Fatalf("client-%d's first call refused: %+v", i, d)
		}
	}
	if n := l.Len(); n != 16 {
		t.Fatalf("a full shard took a 17th key and holds %d keys, want 16 (one evicted)", n)
	}
}

// A rate so slow that its bucket takes decades to refill (Redis's fallback
// share of one a year over a hundred replicas is one a century) is kept
// as never refilling, and its keys as long as the cap allows: with the
// default one-minute TTL, a key left idle for a minute was forgotten and
// came back with a fresh burst, one a minute for a limit of one a century.
func TestPerKeyDecadesRateDoesNotRefillWhenIdle(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := PerKey(rate.Every(100*365*24*time.Hour), 1, WithClock(clk.now))
	ctx := context.Background()
	if d, _ := l.Allow(ctx, "k"); !d.Allowed {
		t.Fatalf("first call refused: %+v", d)
	}
	for i := range 10 {
		clk.advance(time.Hour)
		if d, _ := l.Allow(ctx, "k"); d.Allowed {
			t.Fatalf("allowed again after %d idle hours, for a rate of one a century", i+1)
		}
	}
}
