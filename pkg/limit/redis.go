package limit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"
)

const instrumentation = "github.com/shanhai-dev/shanhai/pkg/limit"

// Redis is one limit shared by every replica of a service: a GCRA state per
// key in Redis, updated by redis_rate's Lua script, which reads Redis's TIME
// so that the replicas' own clocks never enter the arithmetic.
//
// When Redis fails (not when the caller gives up), the limiter switches to a
// local PerKey bucket of limit ÷ replicas: with the load spread evenly the
// fleet still admits about the configured rate. A key's local bucket starts
// from what Redis last said of that key, scaled to the share (a bucket Redis
// had drained is drained locally too), not full: these are security limits
// (failed logins per account), and a fresh local burst for every key each time
// one Redis call took over CallTimeout gave an account that had used its
// attempts on Redis its local burst again on every replica. So every answer
// Redis gives also updates the key's local bucket (the cost of a local
// decision), and the local share holds the keys of the last refill time while
// Redis is up too, within LocalKeys. It logs the switch once, counts every
// fallback decision on shanhai.limit.fallback.decisions with the reason
// (reason="unreachable": no answer, a connection or timeout error;
// reason="refused": Redis answered with an error, such as OOM when a full
// Redis under noeviction refuses the write, or READONLY), and
// tries Redis again after a short cool-down with one probing request at a
// time, so an outage does not make every request wait for a dial timeout.
// A key that holds another type in Redis (WRONGTYPE), or a string the
// script cannot read as a finite number, is decided by the local share
// alone, counted with reason="wrongtype" and warned of at most once a
// minute; the other keys stay on Redis.
//
// Redis's clock is the limit's clock, so a key's state (the instant its
// bucket is full again) is a time on the clock of the primary that wrote it.
// A primary whose clock is behind that one (a failover to a replica whose
// clock lags, the clock stepped back) reads every key written within the
// refill time as drained for the whole difference: an hour back kept each
// client that had used some of its burst refused, with a Retry-After of up to
// an hour, until Redis's clock caught up. A state further ahead than the
// refill time, which no answer on one steady clock gives, is therefore that
// key's problem too: decided by the local share, counted with reason="clock"
// and warned of at most once a minute, until Redis's clock has caught up with
// it (or the key expires). A limit whose refill time (period × burst ÷
// rate) is shortened does the same to the keys the old one drained, for at
// most the old refill time: a smaller burst, a shorter period, or a higher
// rate with Burst set. Lowering the rate does not (with Burst unset the
// refill time is the period whatever the rate). While a rolling restart runs
// replicas of both, those with the shorter refill time decide locally the
// keys the others drained, each from its own local share: such a key can
// get up to one local burst more on each of them than Redis would give it.
//
// Each Redis call is bounded by CallTimeout (default 100ms), whatever the
// client's options: the limiter does not own the client, and a go-redis client
// without ContextTimeoutEnabled (the default) ignores context deadlines on its
// socket and waits for its ReadTimeout (seconds) on a Redis that accepts
// connections but never answers. So the limiter stops waiting by itself and
// leaves the abandoned call to end in the background; while Redis is marked
// down only the one probe per cool-down can be abandoned that way.
type Redis struct {
	name        string
	rl          *redis_rate.Limiter
	lim         redis_rate.Limit
	local       *Local
	log         *slog.Logger
	cooldown    time.Duration
	callTimeout time.Duration
	localKeys   int
	window      time.Duration // Redis's refill time of a drained bucket

	// clock reads the monotonic time (monotonicClock, as Local's buckets do):
	// the cool-down and the warnings' spacing measured on the wall clock
	// (time.Now().UnixNano()) kept Redis untried, and the warnings silent, for
	// as long as a clock stepped back after Redis failed (an NTP correction, a
	// restored VM) had gone back.
	clock     func() int64
	downUntil atomic.Int64 // clock nanos; 0 while Redis answers
	refused   atomic.Bool  // what the last failure was: an error reply, not a missing answer
	probing   atomic.Bool
	fallbacks metric.Int64Counter
	// the fallback counter's attributes for each reason
	unreachableAttrs, refusedAttrs, wrongTypeAttrs, clockAttrs metric.MeasurementOption
	wrongTypeLogged                                            atomic.Int64 // clock nanos of the last warning of a key of the wrong type
	aheadLogged                                                atomic.Int64 // clock nanos of the last warning of a key ahead of Redis's clock
}

// RedisOption tunes NewRedis.
type RedisOption func(*Redis)

// Name namespaces the Redis keys (and labels logs and metrics) so two limits
// on the same key, say per-IP and login, do not share a bucket. Default "default".
func Name(name string) RedisOption { return func(r *Redis) { r.name = name } }

// Logger sets where the fallback switch is logged (default slog.Default()).
func Logger(l *slog.Logger) RedisOption { return func(r *Redis) { r.log = l } }

// Cooldown sets how long to stay on the local fallback before probing Redis
// again (default one second).
func Cooldown(d time.Duration) RedisOption { return func(r *Redis) { r.cooldown = d } }

// CallTimeout sets how long one decision waits for Redis before it counts
// Redis as down and decides locally (default 100ms; d <= 0 keeps the default).
// It is far above a healthy round trip and far below a request's budget.
func CallTimeout(d time.Duration) RedisOption {
	return func(r *Redis) {
		if d > 0 {
			r.callTimeout = d
		}
	}
}

// DefaultLocalKeys is how many keys the local share remembers at most
// (LocalKeys). A key costs it about 130 bytes (an "account:" and a SHA-256
// in hex, measured), so this is about 9 MB a limiter.
const DefaultLocalKeys = 1 << 16

// LocalKeys caps how many keys the local share remembers (default
// DefaultLocalKeys; n below 1 keeps it): the keys Redis answered within their
// refill time, and every key decided locally while Redis is down. Past the cap
// a key is evicted as PerKey's WithMaxKeys says, handing it a fresh local
// burst. The local share had PerKey's default of a million, about 130 MB a
// limiter, in services whose pods may use 64 MiB (the user service runs
// three): an outage of Redis, or a Redis full of the limiter's own keys
// refusing writes, with enough distinct clients (IPv6 /64s, made-up account
// names) had the pod killed for its memory before the cap was reached.
func LocalKeys(n int) RedisOption {
	return func(r *Redis) {
		if n > 0 {
			r.localKeys = n
		}
	}
}

// NewRedis returns a limit of l shared through rdb by replicas processes.
// replicas below 1 count as 1. l.Count and l.Period must be positive (validate
// configuration before calling); NewRedis panics otherwise, as a limit of
// "0 per 0s" has no meaning to fall back on.
func NewRedis(rdb redis.UniversalClient, l Rate, replicas int, opts ...RedisOption) *Redis {
	if l.Count <= 0 || l.Period <= 0 {
		panic(fmt.Sprintf("limit.NewRedis: rate %d per %v: count and period must be positive", l.Count, l.Period))
	}
	replicas = max(1, replicas)
	r := &Redis{
		name:        "default",
		rl:          redis_rate.NewLimiter(rdb),
		lim:         redis_rate.Limit{Rate: l.Count, Burst: l.burst(), Period: l.Period},
		log:         slog.Default(),
		cooldown:    time.Second,
		callTimeout: 100 * time.Millisecond,
		localKeys:   DefaultLocalKeys,
		clock:       monotonicClock(),
	}
	for _, o := range opts {
		o(r)
	}
	r.window = refill(l.Period, l.burst(), l.Count)
	perSec := float64(l.Count) / l.Period.Seconds() / float64(replicas)
	r.local = PerKey(rate.Limit(perSec), max(1, l.burst()/replicas), WithMaxKeys(r.localKeys))

	r.fallbacks, _ = instruments().Int64Counter("shanhai.limit.fallback.decisions",
		metric.WithDescription("Rate-limit decisions made locally because Redis was unreachable or refused the call (reason)"),
		metric.WithUnit("{decision}"))
	r.unreachableAttrs = metric.WithAttributes(attribute.String("limit.name", r.name), attribute.String("reason", "unreachable"))
	r.refusedAttrs = metric.WithAttributes(attribute.String("limit.name", r.name), attribute.String("reason", "refused"))
	r.wrongTypeAttrs = metric.WithAttributes(attribute.String("limit.name", r.name), attribute.String("reason", "wrongtype"))
	r.clockAttrs = metric.WithAttributes(attribute.String("limit.name", r.name), attribute.String("reason", "clock"))
	return r
}

// Allow decides one request of key. It returns an error only when ctx ends
// first; a Redis failure or a Redis slower than CallTimeout yields the local
// fallback's decision instead.
func (r *Redis) Allow(ctx context.Context, key string) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, fmt.Errorf("limit %s: %w", r.name, err)
	}
	if until := r.downUntil.Load(); until != 0 {
		if r.clock() < until || !r.probing.CompareAndSwap(false, true) {
			return r.fallback(ctx, key), nil
		}
		defer r.probing.Store(false)
	}
	res, err := r.allowRedis(ctx, "shanhai:"+r.name+":"+key)
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, fmt.Errorf("limit %s: %w", r.name, ctx.Err())
		}
		if wrongType(err) {
			r.logWrongType(ctx, err)
			return r.decideLocally(ctx, key, r.wrongTypeAttrs), nil
		}
		r.markDown(ctx, err)
		return r.fallback(ctx, key), nil
	}
	if !inRange(res) {
		// A key holding a number the script reads as infinite or NaN (1e400,
		// inf, nan): the answer is nonsense, a reset minus 292 years away or
		// MinInt64 requests left, and the key's alone.
		r.logWrongType(ctx, fmt.Errorf("the key holds a value read as no finite time: remaining %d, reset after %v",
			res.Remaining, res.ResetAfter))
		return r.decideLocally(ctx, key, r.wrongTypeAttrs), nil
	}
	if r.downUntil.Swap(0) != 0 {
		r.log.InfoContext(ctx, "rate limit back on redis", "limit", r.name)
	}
	// Redis answered, so it is up; the key's state may still lie ahead of
	// its clock. (A refill time capped at maxWindow is not the script's: its
	// resets run past it.)
	if r.window > 0 && r.window < maxWindow && res.ResetAfter > r.window+clockSlack {
		r.warnKey(ctx, &r.aheadLogged, "rate limit key in redis is full again later than the limit's refill time allows"+
			" (redis's clock went back, a failover to a primary whose clock is behind, or the limit's refill time was shortened);"+
			" deciding that key locally", fmt.Errorf("reset after %v, refill time %v", res.ResetAfter, r.window))
		return r.decideLocally(ctx, key, r.clockAttrs), nil
	}
	// ResetAfter over the refill time is the part of the burst in use (a
	// refill under a nanosecond is no limit to keep).
	if r.window > 0 {
		r.local.spend(key, float64(res.ResetAfter)/float64(r.window))
	}
	d := Decision{
		Allowed:    res.Allowed > 0,
		Limit:      res.Limit.Burst,
		Remaining:  res.Remaining,
		ResetAfter: res.ResetAfter,
	}
	if d.Allowed {
		d.Remaining = remaining(res)
	}
	if res.RetryAfter > 0 {
		d.RetryAfter = res.RetryAfter
	}
	if res.Limit.Rate > 0 && res.Limit.Burst > 0 && res.Limit.Period > 0 {
		d.Window = refill(res.Limit.Period, res.Limit.Burst, res.Limit.Rate)
	}
	return d, nil
}

// clockSlack is how far past the refill time an answer's reset may lie from
// rounding alone: the script counts in floating-point seconds, its answer is
// parsed back to nanoseconds. A clock that went back by less is not told.
const clockSlack = time.Millisecond

// remaining is how many more requests the bucket of an allowed answer takes
// now. redis_rate's script counts them as burst - reset_after/interval in
// floating point, from Redis's clock in seconds since 2017 (about 3e8, kept
// to about 6e-8 s), and Redis cuts the number to an integer: an exact count
// came back just under itself and one too low, 8 for a fresh key's first
// request at 10 per second, 0 with one request left at 5 per second and a
// burst of 2. It is counted again here from ResetAfter, allowing a
// microsecond (the clock's own resolution) for the rounding, and the one
// more is taken when that is what it comes to.
func remaining(res *redis_rate.Result) int {
	l := res.Limit
	if l.Rate <= 0 || l.Period <= 0 || res.Remaining+1 > l.Burst-1 {
		return res.Remaining
	}
	interval := l.Period.Seconds() / float64(l.Rate)
	if math.Floor(float64(l.Burst)-(res.ResetAfter-time.Microsecond).Seconds()/interval) == float64(res.Remaining+1) {
		return res.Remaining + 1
	}
	return res.Remaining
}

// refill is period × burst / rate, the time a drained bucket takes to fill
// again, multiplied in 128 bits: the int64 product wrapped for a large burst
// over a long period (a million per day), giving a negative or wrong window.
// A window past maxWindow (decades) is reported as maxWindow.
func refill(period time.Duration, burst, rate int) time.Duration {
	hi, lo := bits.Mul64(uint64(period), uint64(burst))
	if hi >= uint64(rate) { // the quotient would not fit 64 bits
		return maxWindow
	}
	q, _ := bits.Div64(hi, lo, uint64(rate))
	return time.Duration(min(q, uint64(maxWindow)))
}

type redisAnswer struct {
	res *redis_rate.Result
	err error
}

// allowRedis asks Redis for a decision and waits at most callTimeout (less if
// ctx ends sooner). The call runs in its own goroutine because the client may
// not honour the context (see Redis); the channel is buffered so an abandoned
// call can still deliver its answer and end.
func (r *Redis) allowRedis(ctx context.Context, key string) (*redis_rate.Result, error) {
	cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
	defer cancel()
	answer := make(chan redisAnswer, 1)
	go func() {
		res, err := r.rl.Allow(cctx, key, r.lim)
		answer <- redisAnswer{res, err}
	}()
	select {
	case a := <-answer:
		return a.res, a.err
	case <-cctx.Done():
		return nil, fmt.Errorf("redis gave no answer within %v: %w", r.callTimeout, cctx.Err())
	}
}

// markDown switches to the local fallback and logs the switch, or a change of
// reason while down (an outage that ends in a Redis that answers but is full).
func (r *Redis) markDown(ctx context.Context, err error) {
	// An error reply means Redis answered: telling it from a missing answer
	// sends an operator to its memory or role rather than to the network.
	var reply redis.Error
	refused := errors.As(err, &reply)
	changed := r.refused.Swap(refused) != refused
	// Never 0, which says Redis answers, however early on the clock.
	if r.downUntil.Swap(max(1, r.clock()+int64(r.cooldown))) == 0 || changed {
		msg := "rate limit redis unreachable, enforcing limit/replicas locally"
		if refused {
			msg = "rate limit redis refused the call, enforcing limit/replicas locally"
		}
		r.log.WarnContext(ctx, msg, "limit", r.name, "error", err.Error())
	}
}

func (r *Redis) fallback(ctx context.Context, key string) Decision {
	attrs := r.unreachableAttrs
	if r.refused.Load() {
		attrs = r.refusedAttrs
	}
	return r.decideLocally(ctx, key, attrs)
}

func (r *Redis) decideLocally(ctx context.Context, key string, attrs metric.MeasurementOption) Decision {
	r.fallbacks.Add(ctx, 1, attrs)
	d, _ := r.local.Allow(ctx, key)
	return d
}

// wrongType reports whether err says the key holds what redis_rate cannot
// read: Redis's WRONGTYPE reply (another type than the string redis_rate
// keeps, a list or a hash), or a runtime error of the script itself ("ERR
// user_script:..."), which its fixed code and arguments meet only in the
// value it read, a string that is no number ("bad argument #1 to 'max'").
// That is one key's problem, found by a read that writes nothing, so it says
// nothing about Redis answering the limiter's other keys; taken for Redis
// refusing the call, one such key put every client on the local share for a
// cool-down each time it was asked. An error of a command the script calls
// (OOM, READONLY) starts with that command's own code, and is Redis refusing.
// A number in the script's answer that redis_rate cannot parse (a
// *strconv.NumError: "-nan", which a key holding "-nan" yields) is the same
// key's problem: Redis answered.
func wrongType(err error) bool {
	var num *strconv.NumError
	if errors.As(err, &num) {
		return true
	}
	var reply redis.Error
	if !errors.As(err, &reply) {
		return false
	}
	msg := reply.Error()
	return strings.HasPrefix(msg, "WRONGTYPE") || strings.HasPrefix(msg, "ERR user_script:")
}

// inRange reports whether res is an answer the script gives for a key it
// wrote itself: a count of requests left within the burst, a reset that is
// not in the past, and for a refusal a wait that is not either. A key
// holding a number it reads as infinite or NaN gives none of these: its
// seconds convert to a Duration of MinInt64 on amd64 (and saturate to
// MaxInt64 on arm64, which no Duration of a real answer reaches), and no
// clock step gives a negative one: the script never stores a time behind
// Redis's own.
func inRange(res *redis_rate.Result) bool {
	const saturated = time.Duration(math.MaxInt64)
	if res.Remaining < 0 || res.Remaining > res.Limit.Burst || res.ResetAfter < 0 || res.ResetAfter == saturated {
		return false
	}
	return res.Allowed > 0 || res.RetryAfter >= 0 && res.RetryAfter != saturated
}

// wrongTypeLogEvery spaces the warnings of keys of the wrong type: each
// request on such a key meets one, and the counter has them all.
const wrongTypeLogEvery = time.Minute

// logWrongType warns, at most once every wrongTypeLogEvery, that a key of
// this limit holds another type. The keys are client addresses and account
// names, so the warning gives the pattern to scan for rather than the key.
func (r *Redis) logWrongType(ctx context.Context, err error) {
	r.warnKey(ctx, &r.wrongTypeLogged, "rate limit key in redis holds another type or no number; deciding that key locally", err)
}

// warnKey warns msg of a key decided locally, at most once every
// wrongTypeLogEvery for each kind of problem (logged holds the last one's
// clock reading).
func (r *Redis) warnKey(ctx context.Context, logged *atomic.Int64, msg string, err error) {
	now := max(1, r.clock()) // 0 is never warned
	last := logged.Load()
	if last != 0 && now-last < int64(wrongTypeLogEvery) || !logged.CompareAndSwap(last, now) {
		return
	}
	r.log.WarnContext(ctx, msg, "limit", r.name, "keys", "rate:shanhai:"+r.name+":*", "error", err.Error())
}

// Degraded reports whether decisions are currently made by the local fallback.
func (r *Redis) Degraded() bool { return r.downUntil.Load() != 0 }
