// Package quota is the gateway's distributed rate limit: one GCRA budget per
// key in Redis (shared by every gateway replica), consumed in leases.
//
// Why not pkg/limit.Redis directly: it asks Redis once per request, which on
// the gateway's hot path costs a network round trip and more CPU than the
// whole proxying work. A Lease takes up to N tokens from Redis at once
// (redis_rate's AllowAtMost) and spends them locally. Taking tokens early can
// only make the fleet stricter, never looser: the Redis budget is still the
// single source of truth. N is small relative to the burst (1 for small
// limits such as login, so those stay exact) and an unspent lease expires
// after LeaseTTL so idle replicas do not hoard.
package quota

import (
	"context"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/shanhai-dev/shanhai/pkg/readmap"
)

// Rate is Count requests per Period with bursts of Burst (0: Count).
type Rate struct {
	Count  int           `json:"count"`
	Period time.Duration `json:"period"`
	Burst  int           `json:"burst"`
}

func (r Rate) burst() int {
	if r.Burst > 0 {
		return r.Burst
	}
	return r.Count
}

// window is how long the burst takes to refill: the RateLimit policy's window.
// Period*burst is taken in 128 bits and the result capped at maxWindow:
// rates the configuration accepts (1/1h:10000000, 9223372036854775807/1s)
// overflowed int64 to a window of 0 or less, and RateLimit-Policy was
// dropped without a word.
func (r Rate) window() time.Duration {
	hi, lo := bits.Mul64(uint64(r.Period), uint64(r.burst()))
	if hi >= uint64(r.Count) { // the quotient needs more than 64 bits
		return maxWindow
	}
	w, _ := bits.Div64(hi, lo, uint64(r.Count))
	return time.Duration(min(w, uint64(maxWindow)))
}

// maxWindow is a window that is, in practice, forever (146 years), and far
// enough below the largest Duration for the policy's rounding up to whole
// seconds.
const maxWindow = time.Duration(1 << 62)

// Off reports a disabled limit.
func (r Rate) Off() bool { return r.Count <= 0 || r.Period <= 0 }

// Decision is one Allow outcome with what the RateLimit headers need.
type Decision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	RetryAfter time.Duration
	ResetAfter time.Duration
	Window     time.Duration
}

// LeaseTTL is how long leased tokens stay spendable.
const LeaseTTL = time.Second

// Lease is a Redis-backed limit consumed in leases; see the package doc.
type Lease struct {
	name     string
	rl       *redis_rate.Limiter
	replicas int
	rate     atomic.Pointer[Rate]
	log      *slog.Logger
	shards   [32]shard
	// base is the origin of the lease's clock (clock, at): the buckets'
	// times (until, denyUntil, the fallback's) and downUntil are
	// nanoseconds since it on the monotonic clock. In Unix nanoseconds a
	// wall clock step (NTP, a VM's resume) moved them all: an hour back
	// kept every lease, denial and cool-down an hour longer. It is a
	// second before New, so that no reading is 0, which they take for none.
	base time.Time
	// downUntil (the lease's clock) skips Redis for a cool-down after a failure,
	// so an outage costs one dial timeout per second, not one per request.
	// It stays set after the cool-down until Redis answers again (0: up),
	// and meanwhile probing lets one request at a time ask Redis; the
	// others are decided locally. Without it every key with no lease left
	// asked at once when a cool-down ended: each of those requests waited
	// out the read timeout on a Redis still hung, and one coming back met
	// the whole backlog at once (pkg/limit probes the same way).
	downUntil atomic.Int64
	probing   atomic.Bool
	// perShard is the most keys a shard holds (DefaultMaxKeys spread over
	// the shards); evictions counts the keys a full shard dropped, and
	// evictLogged (unix nanos) is when that was last logged.
	perShard    int
	evictions   atomic.Int64
	evictLogged atomic.Int64
}

// DefaultMaxKeys is the most keys one limit holds. A client picks its key:
// the per-IP and login limits key an IPv6 client by its /64, and one /48
// holds 65,536 of them, a /32 four billion; a login attempt keeps a key
// about 6 s (its fallback bucket refilling), up to 30 s. Without a cap a
// flood of such keys held every one, about 200 B each (the bucket, the
// key, its entries in the map, its lock-free copy and the sweep's list),
// and the heap grew with the request rate until the container's memory
// limit. 32,768 keys are about 6-11 MB per limit (the higher figure with
// the maps just grown), three limits at most 35 MB, well inside the 102
// MiB GOMEMLIMIT of the gateway's 128 Mi container (deploy/k8s, compose)
// beside its 65,536 cached tokens. A key is needed only while it holds a
// lease, a denial or a spent fallback bucket, so legitimate traffic of
// this many distinct clients within a few seconds is far past what one
// replica serves; an evicted key costs its next request a Redis call.
const DefaultMaxKeys = 1 << 15

// Cooldown is how long decisions stay local after Redis fails.
const Cooldown = time.Second

// shard holds some of a limit's keys. A known key, every request's case, is
// found in ro without a lock (package readmap): both event loops look up the
// ip and user limits on every request. sweep, the one place that deletes,
// marks what it deletes dead, and a dead bucket found in ro counts as a
// miss, so a bucket served from ro is always the one m holds; ro is
// replaced as misses come (Missed), not by the sweep.
type shard struct {
	ro readmap.Copy[*bucket]
	mu sync.Mutex // m, keys, next, ro's misses
	m  map[string]*bucket
	// keys are m's keys, in no order, and next the one the sweep looks at
	// next: it goes on where it stopped, a few keys per new key.
	keys []string
	next int
}

type bucket struct {
	// dead: sweep deleted it from its shard's map (under mu and the
	// shard's lock); a lookup that finds it in the lock-free copy goes on
	// to the map.
	dead atomic.Bool
	// mu is held across Allow's Redis call, so one call at a time refills a
	// key's lease and the requests behind it find its tokens. refilling
	// says such a call is in flight: AllowLocal, which runs on an event
	// loop, must not wait out that round trip (it would stall every
	// connection of the loop) and hands the request to Allow instead.
	mu         sync.Mutex
	refilling  atomic.Bool
	tokens     int   // leased and unspent
	until      int64 // lease expiry (the lease's clock, Lease.at)
	denyUntil  int64 // Redis said no until then
	remaining  int   // Redis's count at the last lease
	resetAfter time.Duration
	// fb is the local fallback bucket, deciding while Redis is down; each
	// Redis answer also spends it to the part of Redis's bucket in use
	// (see spend).
	fb     float64
	fbLast int64
	// fbFullAt is when the fallback bucket is full again: till then it is
	// the key's only memory of what it spent while Redis was down (until
	// and denyUntil stay 0), and a sweep that forgot it gave the key a
	// full burst again.
	fbFullAt int64
}

// New returns a limit named name of r, shared through rdb by replicas
// gateways (used to size the local fallback). Its Redis keys are
// "shanhai:<name>:<key>": name must differ between limits, and between
// gateway fleets that share one Redis but not their limits.
func New(rdb redis.UniversalClient, name string, r Rate, replicas int, log *slog.Logger) *Lease {
	l := &Lease{name: name, base: time.Now().Add(-time.Second), rl: redis_rate.NewLimiter(rdb), replicas: max(1, replicas), log: log,
		perShard: DefaultMaxKeys / len(Lease{}.shards)}
	l.SetRate(r)
	for i := range l.shards {
		l.shards[i].m = map[string]*bucket{}
	}
	return l
}

// clock is now on the lease's clock (base): time.Since of a reading with
// a monotonic part reads only the monotonic clock.
func (l *Lease) clock() int64 { return int64(time.Since(l.base)) }

// at is t on the lease's clock (base), placed by its monotonic reading
// when it has one (time.Now's), by its wall part otherwise.
func (l *Lease) at(t time.Time) int64 { return int64(t.Sub(l.base)) }

// SetRate changes the limit at run time (dynamic config).
func (l *Lease) SetRate(r Rate) { l.rate.Store(&r) }

// Rate returns the limit in force.
func (l *Lease) Rate() Rate { return *l.rate.Load() }

// leaseSize is how many tokens one Redis call takes: a fiftieth of the
// per-replica burst, at least 1.
func (l *Lease) leaseSize(r Rate) int {
	return max(1, r.burst()/(l.replicas*50))
}

// Allow decides one request of key.
func (l *Lease) Allow(ctx context.Context, key []byte) (Decision, error) {
	r := l.rate.Load()
	if r.Off() {
		return Decision{Allowed: true}, nil
	}
	now := l.clock()
	window := r.window()
	b := l.lockedBucket(key)
	defer b.mu.Unlock()
	if d, ok := l.local(b, r, now, window); ok {
		return d, nil
	}
	if down := l.downUntil.Load(); down != 0 {
		// Redis failed and has not answered since: past the cool-down
		// (local decided within it), only one request probes it.
		if now < down || !l.probing.CompareAndSwap(false, true) {
			return b.fallback(now, *r, l.replicas, window), nil
		}
		defer l.probing.Store(false)
	}
	lim := redis_rate.Limit{Rate: r.Count, Burst: r.burst(), Period: r.Period}
	b.refilling.Store(true)
	res, err := l.rl.AllowAtMost(ctx, "shanhai:"+l.name+":"+string(key), lim, l.leaseSize(*r))
	b.refilling.Store(false)
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, fmt.Errorf("quota %s: %w", l.name, ctx.Err())
		}
		// The cool-down runs from the failure, read now: from the request's
		// start, a read timeout of Cooldown or more (REDIS_URL's
		// read_timeout) left none, and every request waited out the
		// timeout on a hung Redis.
		failed := l.clock()
		if l.downUntil.Swap(failed+int64(Cooldown)) < failed-int64(Cooldown) {
			l.log.WarnContext(ctx, "rate limit redis unreachable, deciding locally", "limit", l.name, "error", err.Error())
		}
		return b.fallback(now, *r, l.replicas, window), nil
	}
	if l.downUntil.Swap(0) != 0 {
		l.log.InfoContext(ctx, "rate limit back on redis", "limit", l.name)
	}
	b.remaining, b.resetAfter = res.Remaining, res.ResetAfter
	// Read after the answer, not at the request's start: Redis counted
	// ResetAfter from some instant of the call, and the later reading can
	// only make the fallback stricter.
	b.spend(l.clock(), *r, l.replicas, window, res.ResetAfter)
	if res.Allowed == 0 {
		b.denyUntil = now + int64(res.RetryAfter)
		return Decision{Limit: r.burst(), RetryAfter: res.RetryAfter, ResetAfter: res.ResetAfter, Window: window}, nil
	}
	b.tokens, b.until = res.Allowed-1, now+int64(LeaseTTL)
	return Decision{Allowed: true, Limit: r.burst(), Remaining: b.remaining + b.tokens, ResetAfter: res.ResetAfter, Window: window}, nil
}

// lockedBucket is key's bucket, locked. A bucket the sweep deleted
// between the lookup and the lock (it marks it dead under that lock) is
// let go and key looked up again: a lease taken into it from Redis, or a
// denial or the fallback's spending noted there, went where no later
// lookup looks. (Not shown by a test: the window is between two
// statements, and a goroutine blocked on a mutex is nothing a test can wait
// for.)
func (l *Lease) lockedBucket(key []byte) *bucket {
	for {
		b := l.bucket(key)
		b.mu.Lock()
		if !b.dead.Load() {
			return b
		}
		b.mu.Unlock()
	}
}

// fallback is a local token bucket of rate/replicas, used while Redis fails.
//
// It starts a key from what Redis last said of it, not full (spend): the
// part of Redis's burst in use at its last answer (ResetAfter over the
// window), refilled since, is in use in the share too. A fresh share for
// every key each time a Redis call failed or outlasted the client's read
// timeout gave a client that had spent its login attempts, or a user its
// requests, limit ÷ replicas more on every replica, again at each
// cool-down. pkg/limit's Redis limit keeps its local share the same way
// (1235892); its buckets are not used here because the fallback lives in
// the lease's bucket, found by the one lookup a request makes. A key Redis
// never answered this replica about, or one it forgot, still starts with a
// full share.
func (b *bucket) fallback(now int64, r Rate, replicas int, window time.Duration) Decision {
	perNano, burst := b.refill(now, r, replicas)
	if b.fb >= 1 {
		b.fb--
		b.fbFullAt = now + int64(min((burst-b.fb)/perNano, 1<<62))
		return Decision{Allowed: true, Limit: r.burst(), Remaining: int(b.fb), Window: window}
	}
	return Decision{Limit: r.burst(), RetryAfter: time.Duration((1 - b.fb) / perNano), Window: window}
}

// refill brings the fallback bucket to now and returns its refill per
// nanosecond and its burst (the share of one replica).
func (b *bucket) refill(now int64, r Rate, replicas int) (perNano, burst float64) {
	perNano = float64(r.Count) / float64(r.Period) / float64(replicas)
	burst = float64(max(1, r.burst()/replicas))
	switch {
	case b.fbLast == 0:
		b.fb = burst
		b.fbLast = now
	case now > b.fbLast:
		// Readings may arrive slightly out of order (callers pass the
		// time their request started): an older one refills nothing.
		b.fb = min(burst, b.fb+float64(now-b.fbLast)*perNano)
		b.fbLast = now
	}
	return perNano, burst
}

// spend makes the fallback bucket no fuller than Redis's was at an answer
// saying it is full again in resetAfter: that part of the window is in use
// in the share too (over the window counts as all of it). It never makes the
// bucket fuller, so what the share spent in an outage stays spent, and the
// sweep keeps the key until the bucket is full again (fbFullAt). Run once
// per Redis call, beside a round trip.
func (b *bucket) spend(now int64, r Rate, replicas int, window, resetAfter time.Duration) {
	if resetAfter <= 0 || window <= 0 {
		return
	}
	perNano, burst := b.refill(now, r, replicas)
	used := min(1, float64(resetAfter)/float64(window))
	b.fb = min(b.fb, burst*(1-used))
	b.fbFullAt = now + int64(min((burst-b.fb)/perNano, 1<<62))
}

// shardOf is key's shard (FNV-1a).
func (l *Lease) shardOf(key []byte) *shard {
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	return &l.shards[h%uint32(len(l.shards))]
}

func (l *Lease) bucket(key []byte) *bucket {
	s := l.shardOf(key)
	if b := s.ro.Load()[string(key)]; b != nil && !b.dead.Load() {
		return b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[string(key)]
	if b == nil {
		if len(s.m) >= sweepAbove {
			s.sweep(l.clock(), sweepStep)
		}
		if len(s.m) >= l.perShard {
			l.evict(s)
		}
		b = &bucket{}
		k := string(key)
		s.m[k] = b
		s.keys = append(s.keys, k)
	}
	s.ro.Missed(s.m)
	return b
}

// sweepAbove is the keys a shard holds before each new key sweeps some;
// sweepStep is how many it looks at. The sweep looked at every key and
// copied the map for ro under the shard's lock, at every new key once the
// shard was full (every request on the shard waited: with 4096 keys
// leased, each new client IP cost a sweep that freed nothing). Now a new
// key looks at sweepStep keys, so the map's idle keys are all looked at
// within len/sweepStep new keys, and no copy is made: ro is taken again by
// Missed, whose cost is amortised over its misses.
//
// sweepAbove is below the cap per shard (DefaultMaxKeys/32, 1,024): a shard
// of idle keys is swept before a new key evicts one, and an idle key is
// not held for good below the cap (4,096 kept up to 131,072 idle keys per
// limit, past any cap that fits the gateway's memory limit).
const (
	sweepAbove = 512
	sweepStep  = 8
)

// sweep looks at up to n keys from where it stopped, and forgets those
// with nothing leased, no denial pending and a full fallback bucket (which
// each Redis answer spends as Redis's: see spend); a forgotten key simply
// asks Redis again next time, and would start the fallback full.
func (s *shard) sweep(now int64, n int) {
	for n = min(n, len(s.keys)); n > 0; n-- {
		if s.next >= len(s.keys) {
			s.next = 0
		}
		k := s.keys[s.next]
		b := s.m[k]
		if b.mu.TryLock() {
			if now >= b.until && now >= b.denyUntil && now >= b.fbFullAt {
				b.dead.Store(true)
				s.remove(s.next)
			}
			b.mu.Unlock()
		}
		s.next++
	}
}

// remove deletes the key at i of s.keys, whose bucket is marked dead; s.mu
// is held. The newest key takes its place, to be looked at when the sweep
// comes round again: looked at next, the newest keys were swept over and
// over and the old never reached.
func (s *shard) remove(i int) {
	delete(s.m, s.keys[i])
	last := len(s.keys) - 1
	s.keys[i], s.keys[last] = s.keys[last], ""
	s.keys = s.keys[:last]
}

// evictSample is how many keys an eviction compares (as pkg/limit's): a
// flood's keys each have tokens left, so eight of them are almost never
// all drained, and eight lookups stay a small part of a new key's cost.
const evictSample = 8

// evict drops one key of the full shard s (s.mu held): of evictSample keys
// picked at random, the one whose fallback bucket is full again first
// (fbFullAt, or a denial's end if later), which is the one with the most
// tokens left: each Redis answer spends that bucket to what Redis has in
// use (spend), a denial to empty. An arbitrary key could be a client that
// spent its login attempts, and its next request would find a full
// fallback share while Redis is down; now it goes only when every key
// looked at is drained too. While Redis answers eviction gives nothing
// away: Redis holds the budget, the key's next request asks it, and a
// lease dropped unspent only makes that key stricter. A bucket
// locked (a Redis call in flight) is passed over; with all eight locked
// none goes and the shard holds one key more, bounded by the requests in
// flight.
func (l *Lease) evict(s *shard) {
	victim := -1
	var vb *bucket
	var vAt int64
	for range evictSample {
		i := rand.IntN(len(s.keys))
		b := s.m[s.keys[i]]
		if b == vb || !b.mu.TryLock() {
			continue
		}
		if at := max(b.fbFullAt, b.denyUntil); vb == nil || at < vAt {
			if vb != nil {
				vb.mu.Unlock()
			}
			victim, vb, vAt = i, b, at
		} else {
			b.mu.Unlock()
		}
	}
	if vb == nil {
		return
	}
	vb.dead.Store(true)
	s.remove(victim)
	vb.mu.Unlock()
	n := l.evictions.Add(1)
	// At most one line a minute per limit: a flood evicts on every request.
	now := time.Now().UnixNano()
	if last := l.evictLogged.Load(); now-last >= int64(time.Minute) && l.evictLogged.CompareAndSwap(last, now) {
		l.log.Warn("rate limit keys at their cap, evicting the ones with the most tokens left",
			"limit", l.name, "max_keys", l.perShard*len(l.shards), "evicted_total", n)
	}
}

// Evictions returns how many keys the limit dropped for new ones since it
// was made (DefaultMaxKeys): nonzero means more distinct clients than the
// cap within a few seconds, a key flood or a cap too small.
func (l *Lease) Evictions() int64 { return l.evictions.Load() }
