package limit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const shardCount = 64 // power of two; enough that 2-16 cores rarely meet on one lock

// Local is a set of token buckets, one per key, kept in this process. It is
// safe for concurrent use.
//
// Memory is bounded two ways. A key untouched for the idle TTL is dropped:
// the TTL is never shorter than the time a bucket needs to refill completely,
// so a dropped key would have come back as a full bucket anyway and
// forgetting it changes no decision. And each shard holds at most maxKeys/64
// keys; when a shard is full of active keys an arbitrary one is evicted, which
// hands that one client a fresh burst — a bounded leak preferred over
// unbounded growth under a key-spraying attack.
type Local struct {
	limit   rate.Limit
	burst   int
	now     func() time.Time
	ttl     time.Duration
	perShrd int
	seed    maphash.Seed
	shards  [shardCount]shard
}

type shard struct {
	mu        sync.RWMutex
	m         map[string]*bucket
	nextSweep atomic.Int64 // unix nanos
}

type bucket struct {
	lim  *rate.Limiter
	seen atomic.Int64 // unix nanos of the last decision
}

// Option tunes PerKey.
type Option func(*Local)

// WithIdleTTL sets how long an untouched key is remembered (default one
// minute; raised to the full-refill time if shorter).
func WithIdleTTL(d time.Duration) Option { return func(l *Local) { l.ttl = d } }

// WithMaxKeys caps how many keys are held at once (default 1,000,000).
func WithMaxKeys(n int) Option {
	return func(l *Local) { l.perShrd = max(1, n/shardCount) }
}

// WithClock replaces time.Now, for tests that drive time by hand.
func WithClock(now func() time.Time) Option { return func(l *Local) { l.now = now } }

// PerKey returns token buckets that refill at r per second and hold at most
// burst tokens, one bucket per key.
func PerKey(r rate.Limit, burst int, opts ...Option) *Local {
	l := &Local{
		limit:   r,
		burst:   burst,
		now:     monotonicNow(),
		ttl:     time.Minute,
		perShrd: 1_000_000 / shardCount,
		seed:    maphash.MakeSeed(),
	}
	for _, o := range opts {
		o(l)
	}
	if r > 0 && r != rate.Inf {
		if refill := time.Duration(float64(burst) / float64(r) * float64(time.Second)); l.ttl < refill {
			l.ttl = refill
		}
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*bucket)
	}
	return l
}

// monotonicNow returns a clock that reads only the monotonic time source:
// half the cost of time.Now, which reads the wall clock as well. Buckets only
// ever subtract times, so the wall reading is of no use to them.
func monotonicNow() func() time.Time {
	epoch := time.Now()
	return func() time.Time { return epoch.Add(time.Since(epoch)) }
}

// Allow takes one token from key's bucket if there is one. It never fails;
// the error is there to satisfy Limiter.
func (l *Local) Allow(_ context.Context, key string) (Decision, error) {
	return l.decide(key, l.now()), nil
}

func (l *Local) decide(key string, now time.Time) Decision {
	b := l.bucket(key, now)
	ok := b.lim.AllowN(now, 1)
	tokens := b.lim.TokensAt(now)
	d := Decision{Allowed: ok, Limit: l.burst, Remaining: max(0, int(tokens))}
	if l.limit == rate.Inf {
		return d
	}
	if l.limit <= 0 {
		if !ok {
			d.RetryAfter = time.Hour // never refills: any honest answer is "much later"
		}
		return d
	}
	perToken := float64(time.Second) / float64(l.limit)
	if !ok {
		d.RetryAfter = time.Duration(math.Ceil((1 - tokens) * perToken))
	}
	d.ResetAfter = time.Duration(math.Ceil((float64(l.burst) - tokens) * perToken))
	d.Window = time.Duration(float64(l.burst) * perToken)
	return d
}

func (l *Local) bucket(key string, now time.Time) *bucket {
	s := &l.shards[maphash.String(l.seed, key)&(shardCount-1)]
	n := now.UnixNano()
	if n >= s.nextSweep.Load() {
		l.sweep(s, n)
	}
	s.mu.RLock()
	b := s.m[key]
	s.mu.RUnlock()
	if b == nil {
		s.mu.Lock()
		if b = s.m[key]; b == nil {
			if len(s.m) >= l.perShrd {
				l.sweepLocked(s, n)
				for k := range s.m { // still full: evict an arbitrary key
					if len(s.m) < l.perShrd {
						break
					}
					delete(s.m, k)
				}
			}
			b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
			b.seen.Store(n) // before it is visible, so a sweep cannot take it at once
			s.m[key] = b
		}
		s.mu.Unlock()
	}
	// Refresh the idle mark at most every ttl/16: eviction only needs that
	// precision, and skipping the store spares a contended cache-line write
	// on hot keys.
	if n-b.seen.Load() > int64(l.ttl)/16 {
		b.seen.Store(n)
	}
	return b
}

func (l *Local) sweep(s *shard, now int64) {
	s.mu.Lock()
	if now >= s.nextSweep.Load() {
		l.sweepLocked(s, now)
	}
	s.mu.Unlock()
}

func (l *Local) sweepLocked(s *shard, now int64) {
	cutoff := now - int64(l.ttl)
	for k, b := range s.m {
		if b.seen.Load() < cutoff {
			delete(s.m, k)
		}
	}
	s.nextSweep.Store(now + int64(l.ttl)/2)
}

// Len reports how many keys are remembered, for tests and metrics.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
