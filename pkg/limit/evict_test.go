package limit

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// A full shard evicts a key to take a new one; evicting a drained key hands
// it a fresh burst. While Redis is down the login limiter's local share is
// such a set (LocalKeys, 65,536), so a flood of made-up account names
// evicted the account under attack, at random, and bought it a fresh burst of
// password guesses. Eviction now takes the key with the most left of those
// it looks at, so a drained key stays while keys with tokens left can go.
func TestPerKeyFloodDoesNotEvictADrainedKey(t *testing.T) {
	now := time.Unix(0, 0)
	// login-account's shape: 5 per 5 minutes; one shard of 16 keys.
	lim := PerKey(5.0/300, 5, WithMaxKeys(minPerShard), WithClock(func() time.Time { return now }))
	ctx := context.Background()
	for i := range 5 {
		if d, _ := lim.Allow(ctx, "account:victim"); !d.Allowed {
			t.Fatalf("guess %d refused: %+v", i+1, d)
		}
	}
	for i := range 100 * minPerShard {
		if d, _ := lim.Allow(ctx, "account:made-up-"+strconv.Itoa(i)); !d.Allowed {
			t.Fatalf("made-up key %d refused: %+v", i, d)
		}
		now = now.Add(time.Millisecond)
		if i%minPerShard == 0 {
			if d, _ := lim.Allow(ctx, "account:victim"); d.Allowed {
				t.Fatalf("after %d made-up keys the drained key was allowed again: evicted, it got a fresh burst (%+v)", i+1, d)
			}
		}
	}
	if n := lim.Len(); n > minPerShard {
		t.Fatalf("%d keys held, cap %d", n, minPerShard)
	}
}
