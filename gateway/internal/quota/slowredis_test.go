package quota

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A key drained on Redis stays drained when Redis turns slow. The local
// fallback bucket started full, so one Redis call past the client's read
// timeout (250 ms in the gateway) handed every key limit ÷ replicas again on
// every replica: a client that had spent its login attempts, or a user its
// requests, got a fresh burst for the cool-down, and again at each one.
//
// The client's read timeout is generous (a second) so that the draining
// calls, the first of which dials through the proxy, stay on Redis on two
// loaded cores; a held reply is slower than any timeout.
func TestRedisSlowAfterAKeyIsDrainedKeepsItDrained(t *testing.T) {
	for _, c := range []struct {
		name     string
		r        Rate
		replicas int
	}{
		{"login-1", Rate{Count: 5, Period: 5 * time.Minute}, 1},
		{"login-3", Rate{Count: 5, Period: 5 * time.Minute}, 3},
		{"user-leased-2", Rate{Count: 1000, Period: time.Hour}, 2}, // leases of 10
	} {
		t.Run(c.name, func(t *testing.T) {
			p := testenv.HoldingRedis(t)
			rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: time.Second})
			t.Cleanup(func() { _ = rdb.Close() })
			l := New(rdb, uniq(), c.r, c.replicas, slog.New(slog.DiscardHandler))
			ctx := context.Background()
			key := []byte("user:victim")
			burst := c.r.burst()
			// Exactly the burst: the last answer is an allow with nothing
			// left, so no denial is remembered for the fallback to honour.
			allowed := 0
			for range burst {
				d, err := l.Allow(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if l.downUntil.Load() != 0 {
					t.Fatal("a call failed before Redis was made slow (a loaded machine?): the test proves nothing")
				}
				if d.Allowed {
					allowed++
				}
			}
			if allowed != burst {
				t.Fatalf("on Redis: %d of the burst of %d allowed", allowed, burst)
			}
			p.Hold()
			for i := range 3 {
				d, err := l.Allow(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					t.Fatalf("request %d over the limit, Redis slow (down %v), was allowed: what Redis counted was forgotten: %+v",
						burst+1+i, l.downUntil.Load() != 0, d)
				}
				if d.RetryAfter <= 0 {
					t.Fatalf("refused without RetryAfter: %+v", d)
				}
			}
			if l.downUntil.Load() == 0 {
				t.Fatal("a Redis slower than the read timeout did not put the limit on its local fallback")
			}
			// A key Redis never counted still has its local share.
			if d, _ := l.Allow(ctx, []byte("user:other")); !d.Allowed {
				t.Fatalf("a key Redis never counted is refused locally: %+v", d)
			}
		})
	}
}

// The cool-down after a failed call runs from the failure, so the requests
// behind it are decided locally (on the event loop) rather than each waiting
// out the read timeout on Redis again. It ran from the start of the call: a
// REDIS_URL read_timeout of a second or more (Cooldown) left no cool-down at
// all, and while Redis hung every request waited that long.
func TestCooldownRunsFromTheFailure(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Hung(t), MaxRetries: -1, ReadTimeout: Cooldown})
	t.Cleanup(func() { _ = rdb.Close() })
	l := New(rdb, uniq(), Rate{Count: 10, Period: time.Hour}, 1, slog.New(slog.DiscardHandler))
	if d, err := l.Allow(context.Background(), []byte("first")); err != nil || !d.Allowed {
		t.Fatalf("the call that met the hung Redis: %+v, %v; want allowed by the fallback", d, err)
	}
	if d, ok := l.AllowLocal([]byte("next"), time.Now()); !ok || !d.Allowed {
		t.Fatalf("right after a failed call: AllowLocal = %+v, %v; want decided by the fallback, not sent to Redis", d, ok)
	}
}
