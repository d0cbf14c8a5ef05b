package quota

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// AllowLocal spends a lease Allow took and otherwise leaves the decision
// to Allow, spending nothing.
func TestAllowLocalOnlySpendsLeases(t *testing.T) {
	rdb := redisClient(t)
	l := New(rdb, uniq(), Rate{Count: 1000, Period: time.Hour, Burst: 1000}, 1, slog.Default())
	key := []byte("10.0.0.1")
	if _, ok := l.AllowLocal(key, time.Now()); ok {
		t.Fatal("decided without a lease")
	}
	d, err := l.Allow(context.Background(), key)
	if err != nil || !d.Allowed {
		t.Fatalf("Allow = %+v, %v", d, err)
	}
	n := l.leaseSize(l.Rate()) - 1 // tokens left in the lease
	for i := range n {
		if d, ok := l.AllowLocal(key, time.Now()); !ok || !d.Allowed {
			t.Fatalf("lease token %d: ok=%v allowed=%v", i, ok, d.Allowed)
		}
	}
	if _, ok := l.AllowLocal(key, time.Now()); ok {
		t.Fatal("decided past the lease")
	}
	if d, ok := New(rdb, uniq(), Rate{}, 1, slog.Default()).AllowLocal(key, time.Now()); !ok || !d.Allowed {
		t.Fatal("a switched-off limit must allow locally")
	}
}

// While Redis is down the local fallback decides; the caller's clock
// readings may arrive slightly out of order (each is its request's start),
// and an older one must neither refill the bucket nor drain it below empty
// (which would tell the client to wait longer than it has to).
func TestFallbackIgnoresOlderReadings(t *testing.T) {
	l := New(nil, uniq(), Rate{Count: 1, Period: time.Second, Burst: 2}, 1, slog.Default())
	t0 := time.Now()
	l.downUntil.Store(l.at(t0.Add(time.Hour)))
	key := []byte("10.0.0.2")
	for i := range 2 { // the burst
		if d, ok := l.AllowLocal(key, t0.Add(time.Duration(i)*time.Millisecond)); !ok || !d.Allowed {
			t.Fatalf("burst request %d: ok=%v allowed=%v", i, ok, d.Allowed)
		}
	}
	d, _ := l.AllowLocal(key, t0.Add(-900*time.Millisecond))
	if d.Allowed || d.RetryAfter > time.Second {
		t.Fatalf("older reading on an empty bucket: allowed=%v retry after %v, want refused within 1s", d.Allowed, d.RetryAfter)
	}
	if d, _ := l.AllowLocal(key, t0.Add(500*time.Millisecond)); d.Allowed {
		t.Fatal("half a token's refill allowed a request")
	}
	if d, _ := l.AllowLocal(key, t0.Add(1100*time.Millisecond)); !d.Allowed {
		t.Fatal("a full token's refill was refused")
	}
}

// While Allow holds a key's bucket for its Redis call, AllowLocal (on an
// event loop) gives the request back instead of waiting out the round trip.
func TestAllowLocalDoesNotWaitForRefill(t *testing.T) {
	l := New(redisClient(t), uniq(), Rate{Count: 1000, Period: time.Hour, Burst: 1000}, 1, slog.Default())
	key := []byte("10.0.0.2")
	b := l.bucket(key)
	b.mu.Lock() // as Allow holds it around AllowAtMost
	b.refilling.Store(true)
	done := make(chan bool)
	go func() {
		_, ok := l.AllowLocal(key, time.Now())
		done <- ok
	}()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("AllowLocal decided during a refill")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AllowLocal waited for the refill's lock")
	}
	b.refilling.Store(false)
	b.mu.Unlock()
}

// AllowLocal runs on the event loop for every request (the ip and user
// limits): a lease's token costs no allocation. A defer inside its lookup
// loop (f8f5464) was allocated on every call, two a request.
func TestAllowLocalAllocatesNothing(t *testing.T) {
	l := New(nil, uniq(), Rate{Count: 10, Period: time.Second}, 1, slog.Default())
	key := []byte("10.0.0.3")
	b := l.bucket(key)
	b.tokens, b.until = 1<<30, l.at(time.Now().Add(time.Hour))
	now := time.Now()
	if n := testing.AllocsPerRun(200, func() {
		if _, ok := l.AllowLocal(key, now); !ok {
			t.Fatal("a leased token was not spent locally")
		}
	}); n != 0 {
		t.Fatalf("AllowLocal: %.1f allocations per leased token, want 0", n)
	}
}
