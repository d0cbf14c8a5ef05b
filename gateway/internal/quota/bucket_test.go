package quota

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A key has one bucket whether it is found in the lock-free copy or in the
// map behind the lock, also while other keys are added concurrently, and a
// key the sweep forgot is not served from a stale copy.
func TestBucketLookupIsConsistent(t *testing.T) {
	l := New(nil, uniq(), Rate{Count: 10, Period: time.Second}, 1, slog.Default())
	first := l.bucket([]byte("k"))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				l.bucket(fmt.Appendf(nil, "g%d-%d", g, i))
				if b := l.bucket([]byte("k")); b != first {
					t.Errorf("key k got a second bucket")
					return
				}
			}
		})
	}
	wg.Wait()
	for range 3 {
		if l.bucket([]byte("k")) != first {
			t.Fatal("key k got a second bucket")
		}
	}
	// Every key is in the copy once enough lookups missed it.
	for i := range 64 {
		key := fmt.Appendf(nil, "g0-%d", i)
		want := l.bucket(key)
		for range 10000 {
			if l.bucket(key) != want {
				t.Fatalf("%s got a second bucket", key)
			}
		}
	}

	// The sweep forgets idle keys; a later lookup must make a new bucket,
	// not find the old one in the lock-free copy.
	h := l.shardOf([]byte("k"))
	h.mu.Lock()
	h.sweep(l.clock(), len(h.keys))
	h.mu.Unlock()
	if b, ok := h.ro.Load()["k"]; ok && !b.dead.Load() {
		t.Fatal("swept key k still live in the lock-free copy")
	}
	if l.bucket([]byte("k")) == first {
		t.Fatal("swept key k found its old bucket")
	}
}

// Every core looking up one busy key, as the gateway's event loops do for a
// client's ip and user limits on every request.
func BenchmarkBucketParallel(b *testing.B) {
	l := New(nil, uniq(), Rate{Count: 10, Period: time.Second}, 1, slog.Default())
	key := []byte("203.0.113.5")
	l.bucket(key)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.bucket(key)
		}
	})
}

// sameShard returns n keys of l that fall in one shard, and that shard.
func sameShard(l *Lease, n int) ([][]byte, *shard) {
	target := l.shardOf([]byte("0"))
	var keys [][]byte
	for i := 0; len(keys) < n; i++ {
		if k := fmt.Appendf(nil, "%d", i); l.shardOf(k) == target {
			keys = append(keys, k)
		}
	}
	return keys, target
}

// A full shard is swept a few keys per new key, not whole under its lock
// at every new key: the shard's idle keys go over the next new keys, and a
// key with a lease or a denial pending stays.
func TestSweepIsIncremental(t *testing.T) {
	l := New(nil, uniq(), Rate{Count: 10, Period: time.Second}, 1, slog.Default())
	keys, s := sameShard(l, 3*sweepAbove)
	old, fresh := keys[:sweepAbove], keys[sweepAbove:]
	leased := l.bucket(old[0])
	leased.until = l.at(time.Now().Add(time.Hour))
	denied := l.bucket(old[1])
	denied.denyUntil = l.at(time.Now().Add(time.Hour))
	for _, k := range old[2:] {
		l.bucket(k)
	}
	l.bucket(fresh[0])
	if n := len(s.m); n < sweepAbove+1-sweepStep {
		t.Fatalf("one new key in a full shard of idle keys left %d keys of %d: more than %d swept at once", n, sweepAbove+1, sweepStep)
	}
	// A sweep comes every few new keys once the shard is full, and goes
	// round all its keys within twice as many new keys as it holds.
	for _, k := range fresh[1 : 2*sweepAbove] {
		l.bucket(k)
	}
	for i, k := range old {
		if b := s.m[string(k)]; (b != nil) != (i < 2) {
			t.Fatalf("key %d of the full shard: kept %v; want only the leased and the denied one kept", i, b != nil)
		}
	}
	if l.bucket(old[0]) != leased || l.bucket(old[1]) != denied {
		t.Fatal("a key with a lease or a denial pending got a new bucket")
	}
	if len(s.keys) != len(s.m) {
		t.Fatalf("the sweep's %d keys and the map's %d disagree", len(s.keys), len(s.m))
	}
}

// New keys into a shard full of leased keys (none can be forgotten): the
// slowest single lookup ("worst-ns") is what every request on the shard
// may wait behind. A whole sweep and a copy of the map per new key was
// hundreds of microseconds.
func BenchmarkBucketNewKeyFullShard(b *testing.B) {
	l := New(nil, uniq(), Rate{Count: 10, Period: time.Second}, 1, slog.Default())
	keys, _ := sameShard(l, sweepAbove+20000)
	until := l.at(time.Now().Add(time.Hour))
	for _, k := range keys[:sweepAbove] {
		l.bucket(k).until = until
	}
	fresh := keys[sweepAbove:]
	var worst time.Duration
	i := 0
	for b.Loop() {
		if i == len(fresh) {
			b.Fatal("out of keys: lower -benchtime")
		}
		t0 := time.Now()
		l.bucket(fresh[i]).until = until
		worst = max(worst, time.Since(t0))
		i++
	}
	b.ReportMetric(float64(worst.Nanoseconds()), "worst-ns")
}

// While Redis is down a key's fallback bucket is all it remembers of what
// it spent (no lease, no denial): the sweep forgot a drained one as idle,
// and the key started again with a full burst once other clients filled
// its shard. It is kept until the bucket would be full again.
func TestSweepKeepsADrainedFallbackBucket(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	l := New(rdb, uniq(), Rate{Count: 5, Period: time.Hour}, 1, slog.Default())
	keys, s := sameShard(l, 3*sweepAbove)
	k := keys[0]
	allowed := func() (n int) {
		for range 10 {
			d, err := l.Allow(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				n++
			}
		}
		return n
	}
	if n := allowed(); n != 5 {
		t.Fatalf("Redis down, 5/hour: %d of 10 allowed, want the burst of 5", n)
	}
	for _, o := range keys[1:] { // other clients of the shard: sweeps go round it
		l.bucket(o)
	}
	if n := allowed(); n != 0 {
		t.Fatalf("Redis down, 5/hour: %d more allowed after other keys filled the shard, want 0", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[string(k)]
	s.sweep(b.fbFullAt-1, len(s.keys))
	if s.m[string(k)] != b {
		t.Fatal("swept before its fallback bucket was full again")
	}
	for range 3 { // a round moves the newest key into each deleted one's place, for the next round
		s.sweep(b.fbFullAt, len(s.keys))
	}
	if s.m[string(k)] != nil {
		t.Fatal("kept once its fallback bucket was full again: an idle key")
	}
}
