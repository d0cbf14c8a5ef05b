package limit

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// A key new to a full shard between two sweeps (8f93bb2 sweeps a full shard at
// most every ttl/16) is remembered like any other: its second request finds
// the bucket its first drained, rather than no bucket and no limit.
func TestPerKeyKeyNewToAFullShardIsLimited(t *testing.T) {
	now := time.Unix(0, 0)
	lim := PerKey(0.001, 1, WithMaxKeys(minPerShard), WithClock(func() time.Time { return now })) // one shard
	ctx := context.Background()
	for i := range 3 * minPerShard { // the shard is full from the 17th key on, all of them active
		key := "k" + strconv.Itoa(i)
		if d, _ := lim.Allow(ctx, key); !d.Allowed {
			t.Fatalf("first request of %s refused: %+v", key, d)
		}
		if d, _ := lim.Allow(ctx, key); d.Allowed {
			t.Fatalf("second request of %s, with a burst of 1, allowed: %+v", key, d)
		}
		if n := lim.Len(); n > minPerShard {
			t.Fatalf("%d keys held, cap %d", n, minPerShard)
		}
		now = now.Add(time.Millisecond)
	}
}
