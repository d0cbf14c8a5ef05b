package quota

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
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
	h.sweep(time.Now().UnixNano())
	h.mu.Unlock()
	if _, ok := h.ro.Load()["k"]; ok {
		t.Fatal("swept key k still in the lock-free copy")
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
