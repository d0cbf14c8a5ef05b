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
