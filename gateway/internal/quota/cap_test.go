package quota

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// downLogin is the login limit (10/1m, burst 5) on a Redis that refuses
// every connection, so each key's fallback bucket decides and holds it
// (a spent attempt keeps a key about 6 s, a drained one 30 s).
func downLogin(t *testing.T) *Lease {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return New(rdb, uniq(), Rate{Count: 10, Period: time.Minute, Burst: 5}, 1, slog.Default())
}

// floodKey is the i-th made-up client: a /64 of one IPv6 /32, as the
// per-IP and login limits key an IPv6 client (2^32 of them).
func floodKey(i int) []byte {
	return fmt.Appendf(nil, "2001:db8:%x:%x::/64", i>>16, i&0xffff)
}

func held(l *Lease) (n int) {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// A flood of distinct keys within the time each is kept (one login attempt
// from each of many IPv6 /64s) held every key: the shards had no cap, and
// the gateway's heap grew with the attacker's address space.
func TestKeyFloodIsCapped(t *testing.T) {
	l := downLogin(t)
	const capKeys = DefaultMaxKeys
	for i := range capKeys + capKeys/2 {
		if _, err := l.Allow(context.Background(), floodKey(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := held(l); n > capKeys {
		t.Fatalf("%d distinct keys within their retention left %d held, over the cap of %d", capKeys+capKeys/2, n, capKeys)
	}
}

// The flood's evictions take keys with tokens left, not the account under
// attack: a drained key evicted would start its fallback bucket full again,
// five more attempts while Redis is down. One shard of 16 keys, as
// pkg/limit's test of its eviction, so that an arbitrary choice would hit
// the drained key about once in 16 evictions.
func TestKeyFloodDoesNotEvictADrainedKey(t *testing.T) {
	l := downLogin(t)
	l.perShard = 16
	keys, _ := sameShard(l, 1601)
	victim, flood := keys[0], keys[1:]
	attempt := func(key []byte) bool {
		d, err := l.Allow(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	for range 5 {
		attempt(victim)
	}
	if attempt(victim) {
		t.Fatal("Redis down, login burst 5: a sixth attempt allowed")
	}
	for i, k := range flood {
		attempt(k)
		if attempt(victim) {
			t.Fatalf("after %d made-up keys (%d evicted) the drained key was allowed again", i+1, l.Evictions())
		}
	}
	if n := l.Evictions(); n < int64(len(flood)-16) {
		t.Fatalf("%d evictions for %d new keys past a shard's cap of 16", n, len(flood))
	}
}
