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
// Memory is bounded two ways. A key untouched for at least the idle TTL is
// dropped: the TTL is never shorter than the time a bucket needs to refill
// completely, so a dropped key would have come back as a full bucket anyway
// and forgetting it changes no decision. And each shard holds at most
// maxKeys/shards keys (64 shards, fewer for a cap under 64×16 keys so that
// each holds at least 16); a key new to a full shard evicts another (after
// dropping the idle ones, if the shard was not swept in the last ttl/16):
// of a few looked at, the one with the most tokens left (evictLocked), so a
// drained key is evicted only when all of those are drained too. That hands
// the evicted client a fresh burst — a bounded leak preferred over unbounded
// growth under a key-spraying attack. The new key itself is always
// remembered.
type Local struct {
	limit   rate.Limit
	burst   int
	gcra    gcra
	clock   func() int64 // nanoseconds since an arbitrary, fixed origin
	ttl     time.Duration
	perShrd int
	mask    uint64 // shard index mask: shards in use - 1 (shardCount-1 unless WithMaxKeys is small)
	seed    maphash.Seed
	shards  [shardCount]shard
}

type shard struct {
	mu        sync.RWMutex
	m         map[string]*bucket
	nextSweep atomic.Int64 // clock nanos
	swept     int64        // clock nanos of the last sweep; guarded by mu
}

// bucket is one key's state: the GCRA theoretical arrival time, plus the
// clock reading of the last decision so idle keys can be forgotten.
type bucket struct {
	tat  atomic.Int64
	seen atomic.Int64
}

// Option tunes PerKey.
type Option func(*Local)

// WithIdleTTL sets how long an untouched key is remembered (default one
// minute; raised to the full-refill time if shorter, lowered to about 73
// years if longer).
func WithIdleTTL(d time.Duration) Option { return func(l *Local) { l.ttl = d } }

// minPerShard is the fewest keys a shard is sized for. A shard that holds
// only a key or two evicts as soon as two active keys hash to it, handing
// each a fresh burst at every request, however far under the cap the whole
// set is; at 16 a shard fills only when far more than its share of the keys
// land in it.
const minPerShard = 16

// WithMaxKeys caps how many keys are held at once (default 1,000,000; n
// below 1 counts as 1). A small cap uses fewer shards (a power of two, one
// under 32 keys) so that each still holds at least minPerShard keys.
func WithMaxKeys(n int) Option {
	return func(l *Local) {
		n = max(1, n)
		shards := shardCount
		for shards > 1 && n/shards < minPerShard {
			shards /= 2
		}
		l.mask, l.perShrd = uint64(shards-1), n/shards
	}
}

// WithClock replaces time.Now, for tests that drive time by hand.
func WithClock(now func() time.Time) Option {
	return func(l *Local) {
		origin := now()
		l.clock = func() int64 { return int64(now().Sub(origin)) }
	}
}

// PerKey returns token buckets that refill at r per second and hold at most
// burst tokens, one bucket per key. A rate of rate.Inf allows everything; a
// rate of zero or less allows burst requests per key and then none until the
// key has been idle for the idle TTL (there is no refill time to raise it
// to); a rate so slow that a refill takes decades allows burst requests per
// key and then none while the key is remembered (its TTL is raised to
// decades); and a burst of zero or less allows nothing.
func PerKey(r rate.Limit, burst int, opts ...Option) *Local {
	l := &Local{
		limit:   r,
		burst:   burst,
		gcra:    newGCRA(r, burst),
		clock:   monotonicClock(),
		ttl:     time.Minute,
		perShrd: 1_000_000 / shardCount,
		mask:    shardCount - 1,
		seed:    maphash.MakeSeed(),
	}
	for _, o := range opts {
		o(l)
	}
	switch {
	case l.gcra.kind == refilling && l.ttl < time.Duration(l.gcra.window):
		l.ttl = time.Duration(l.gcra.window)
	case l.gcra.kind == fixed && r > 0:
		// A refill that takes decades: held as never refilling, a key
		// forgotten after the default minute came back with a fresh burst,
		// one a minute for a limit of one a century (Redis's fallback share
		// of a yearly limit over a hundred replicas). The refill time, raised
		// to as usual, is past the cap below: only the key cap evicts it.
		l.ttl = maxWindow
	}
	// Capped so the sweep's cutoff (now - ttl - ttl/16) cannot wrap: with a
	// TTL near the largest duration ("never forget") it turned positive,
	// every key looked idle, and a full shard dropped them all. maxWindow
	// (decades) still means never in practice.
	l.ttl = min(l.ttl, maxWindow)
	for i := range l.shards {
		l.shards[i].m = make(map[string]*bucket)
	}
	return l
}

// monotonicClock reads only the monotonic time source: half the cost of
// time.Now, which reads the wall clock as well. Buckets only ever subtract
// readings, so the wall time is of no use to them.
func monotonicClock() func() int64 {
	origin := time.Now()
	return func() int64 { return int64(time.Since(origin)) }
}

// Allow takes one token from key's bucket if there is one. It never fails;
// the error is there to satisfy Limiter.
func (l *Local) Allow(_ context.Context, key string) (Decision, error) {
	now := l.clock()
	return l.gcra.take(l.bucket(key, now), now), nil
}

func (l *Local) bucket(key string, now int64) *bucket {
	s := &l.shards[maphash.String(l.seed, key)&l.mask]
	if now >= s.nextSweep.Load() {
		l.sweep(s, now)
	}
	s.mu.RLock()
	b := s.m[key]
	s.mu.RUnlock()
	if b == nil {
		s.mu.Lock()
		if b = s.m[key]; b == nil {
			if len(s.m) >= l.perShrd {
				// Swept at most every ttl/16, the precision of the idle
				// marks (see below): a sweep reads the whole shard, and
				// one per new key made a flood of keys past the cap cost
				// a scan of 15,625 keys (1,024 at a cap of 65,536) per
				// decision, under the shard's lock: 130 µs, not 100 ns. A
				// key that went idle since the last sweep may be evicted
				// later than an active one; either hands its next request
				// a fresh burst.
				if now-s.swept >= int64(l.ttl)/16 {
					l.sweepLocked(s, now)
				}
				for len(s.m) >= l.perShrd { // still full
					evictLocked(s)
				}
			}
			b = &bucket{}
			b.tat.Store(l.gcra.full(now))
			b.seen.Store(now) // before it is visible, so a sweep cannot take it at once
			s.m[key] = b
		}
		s.mu.Unlock()
	}
	// Refresh the idle mark at most every ttl/16: eviction only needs that
	// precision, and skipping the store spares a contended cache-line write
	// on hot keys.
	if now-b.seen.Load() > int64(l.ttl)/16 {
		b.seen.Store(now)
	}
	return b
}

// spend makes key's bucket no fuller than one whose given fraction of the
// burst is in use (0 to 1; over 1 counts as 1), leaving it as it is when it
// already holds less. The Redis limit calls it with each answer Redis gives,
// so that its local share starts a key from what Redis last counted rather
// than from a full bucket (see Redis). A fixed bucket rounds the tokens in
// use up, so a share is never more generous than the fraction.
func (l *Local) spend(key string, fraction float64) {
	if l.gcra.kind == unlimited || !(fraction > 0) {
		return
	}
	fraction = min(fraction, 1)
	now := l.clock()
	b := l.bucket(key, now)
	target := now + int64(fraction*float64(l.gcra.window))
	if l.gcra.kind == fixed {
		target = int64(math.Ceil(fraction * float64(max(0, l.gcra.burst))))
	}
	for {
		cur := b.tat.Load()
		if cur >= target || b.tat.CompareAndSwap(cur, target) {
			return
		}
	}
}

// evictSample is how many keys an eviction compares: enough that a key
// flood, whose keys each have tokens left, almost never finds only drained
// keys among them; few enough to stay a small part of a decision.
const evictSample = 8

// evictLocked drops, of evictSample keys of s (the map's iteration order: a
// random start), the one whose bucket holds the most tokens, which is the
// one with the earliest TAT (the fewest tokens taken, for a fixed bucket).
// An arbitrary key, as evicted before, was as likely to be a drained one,
// and a flood of made-up keys past the cap (the Redis limit's local share
// under an outage, 65,536 keys) handed the account under a password-guessing
// attack a fresh burst for about every cap's worth of them. A drained key now
// goes only when every key looked at is drained too: a flood must drain each
// of its keys to get there. s.mu is held for writing.
func evictLocked(s *shard) {
	var victim string
	var earliest int64
	n := 0
	for k, b := range s.m {
		if tat := b.tat.Load(); n == 0 || tat < earliest {
			victim, earliest = k, tat
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(s.m, victim)
}

func (l *Local) sweep(s *shard, now int64) {
	s.mu.Lock()
	if now >= s.nextSweep.Load() {
		l.sweepLocked(s, now)
	}
	s.mu.Unlock()
}

func (l *Local) sweepLocked(s *shard, now int64) {
	// seen lags the key's last decision by up to ttl/16 (see bucket), so a
	// key is dropped only once even that last decision is a full TTL ago:
	// dropping it sooner could forget a bucket that has not refilled yet.
	cutoff := now - int64(l.ttl) - int64(l.ttl)/16
	for k, b := range s.m {
		if b.seen.Load() < cutoff {
			delete(s.m, k)
		}
	}
	s.swept = now
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

// The bucket arithmetic is hand-written rather than x/time/rate's Limiter,
// which it replaced: rate.Limiter takes a mutex per call and a second one to
// report the tokens left (the RateLimit header needs them), and does its
// arithmetic on time.Time values; together that was most of a decision's
// cost. The generic cell rate algorithm (GCRA) below is the same token bucket
// expressed as one integer, the "theoretical arrival time" (TAT): the
// instant at which the bucket would be full again. Taking a token moves it
// one emission interval later; a request is refused when that would put it
// more than burst intervals ahead of now. One integer means one
// compare-and-swap per decision and no lock. It is also the algorithm
// redis_rate runs in Redis for the distributed limit.

type gcraKind uint8

const (
	refilling gcraKind = iota // the usual case: r tokens per second
	unlimited                 // rate.Inf, or an interval under half a nanosecond
	fixed                     // r <= 0, burst <= 0, or one token per decades: burst tokens, never refilled
)

type gcra struct {
	kind     gcraKind
	burst    int
	interval int64 // nanoseconds per token
	window   int64 // burst * interval: the TAT may run at most this far ahead of now
}

// maxWindow keeps TAT arithmetic far from int64 overflow (about 73 years).
const maxWindow = 1 << 61

func newGCRA(r rate.Limit, burst int) gcra {
	g := gcra{burst: burst}
	switch {
	case r == rate.Inf:
		g.kind = unlimited
		return g
	case r <= 0 || burst <= 0:
		g.kind = fixed
		return g
	}
	iv := float64(time.Second) / float64(r)
	switch {
	case iv < 0.5:
		g.kind = unlimited
	case iv*float64(burst) >= maxWindow:
		g.kind = fixed // one token per decades: indistinguishable from none
	default:
		// Rounding the interval to whole nanoseconds changes the rate by
		// less than 0.5ns per interval: under 0.05% up to a million
		// requests per second per key.
		g.interval = int64(math.Round(iv))
		g.window = int64(burst) * g.interval
	}
	return g
}

// full is the TAT of a bucket created now. Refilling buckets start full (a
// TAT of now); a fixed bucket counts its tokens in the same field instead.
func (g *gcra) full(now int64) int64 {
	if g.kind == fixed {
		return 0 // tokens taken so far
	}
	return now
}

func (g *gcra) take(b *bucket, now int64) Decision {
	d := Decision{Limit: g.burst}
	switch g.kind {
	case unlimited:
		d.Allowed, d.Remaining = true, max(0, g.burst)
		return d
	case fixed:
		return g.takeFixed(b, d)
	}
	for {
		tat := b.tat.Load()
		next := max(tat, now) + g.interval
		if ahead := next - now; ahead > g.window {
			// Refused: the token after the ones already promised is due
			// this much later than the bucket can hold.
			d.RetryAfter = time.Duration(ahead - g.window)
			d.ResetAfter = time.Duration(max(0, tat-now))
			d.Window = time.Duration(g.window)
			return d
		}
		if b.tat.CompareAndSwap(tat, next) {
			ahead := next - now
			d.Allowed = true
			d.Remaining = int((g.window - ahead) / g.interval)
			d.ResetAfter = time.Duration(ahead)
			d.Window = time.Duration(g.window)
			return d
		}
	}
}

// takeFixed serves a bucket that never refills: burst tokens in all.
func (g *gcra) takeFixed(b *bucket, d Decision) Decision {
	for {
		used := b.tat.Load()
		if used >= int64(g.burst) {
			d.RetryAfter = time.Hour // never refills: any honest answer is "much later"
			return d
		}
		if b.tat.CompareAndSwap(used, used+1) {
			d.Allowed = true
			d.Remaining = g.burst - int(used) - 1
			return d
		}
	}
}
