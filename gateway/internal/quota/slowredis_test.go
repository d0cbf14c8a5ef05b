package quota

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// countCalls counts the script calls a client sends (a redis_rate decision
// is one EVALSHA, and one EVAL when Redis lacks the script).
type countCalls struct{ n atomic.Int64 }

func (c *countCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *countCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.HasPrefix(cmd.Name(), "eval") {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *countCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// When a cool-down ends, one request probes Redis; the others go on being
// decided locally until it answers. Every key with no lease left asked Redis
// at once: against a Redis still hung, each of those requests waited out
// the read timeout (250 ms in the gateway) instead of one, once a second,
// and a Redis coming back met the whole backlog at once.
func TestOneProbeAfterTheCooldown(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Hung(t), MaxRetries: -1, ReadTimeout: readTimeout, PoolSize: 64})
	t.Cleanup(func() { _ = rdb.Close() })
	calls := &countCalls{}
	rdb.AddHook(calls)
	l := New(rdb, uniq(), Rate{Count: 1000, Period: time.Second}, 1, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	if _, err := l.Allow(ctx, []byte("first")); err != nil {
		t.Fatal(err)
	}
	until := l.downUntil.Load()
	if until == 0 {
		t.Fatal("a hung Redis did not start a cool-down")
	}
	// Wait out the cool-down (a clock, not another goroutine, to wait for).
	for l.clock() < until {
		time.Sleep(time.Duration(until - l.clock()))
	}
	before := calls.n.Load()
	const keys = 32
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			if d, err := l.Allow(ctx, []byte("key-"+strconv.Itoa(i))); err != nil || !d.Allowed {
				t.Errorf("key %d: %+v, %v; want allowed by the fallback", i, d, err)
			}
		})
	}
	wg.Wait()
	if got := calls.n.Load() - before; got != 1 {
		t.Fatalf("%d of %d keys called the hung Redis after the cool-down, want 1 probe", got, keys)
	}
}
