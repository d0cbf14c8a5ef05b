package limit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// AdaptiveOptions tunes NewAdaptive. Zero values take the defaults shown.
type AdaptiveOptions struct {
	Initial int // starting limit (20)
	Min     int // never below (1)
	Max     int // never above (1000)
	// Latency is the slowest response still counted as healthy; a slower one
	// is a congestion signal like a failure. Zero means only failures count.
	Latency time.Duration
	// Backoff is the multiplicative decrease on congestion (0.9).
	Backoff float64
	// Name, if set, reports the limit and the calls in flight as the gauges
	// shanhai.limit.concurrency.{limit,inflight}{limit.name=Name}.
	Name string
}

// Adaptive is a concurrency limit that sizes itself by AIMD: each healthy
// completion while the limit is in real use adds 1/limit (about +1 per
// round of requests), and a congestion signal (failure or latency above
// AdaptiveOptions.Latency) multiplies it by Backoff, at most once per round —
// requests admitted before a decrease cannot trigger another one, so a burst
// of timeouts from one overload counts once.
//
// AIMD rather than a gradient (Netflix's gradient2 compares short- and
// long-term RTT): behind the gateway one limiter sees a mix of routes whose
// latencies differ by 50x (argon2 logins next to cached reads), so an RTT
// ratio moves with the request mix as much as with queueing and shrinks the
// limit for no reason. AIMD reacts only to signals an operator chose —
// errors and an explicit latency target — which is predictable and easy to
// reason about in an incident.
type Adaptive struct {
	o        AdaptiveOptions
	inflight atomic.Int64
	cur      atomic.Int64  // int(limit), read on the hot path
	round    atomic.Uint64 // bumped on every decrease

	mu    sync.Mutex
	limit float64
	unreg func()
}

// Validate reports options NewAdaptive cannot honour: a Min above Max,
// either as given or once the zero one takes its default (a Min of 2000
// with Max unset is above the default 1000). Such a limiter cannot keep
// both bounds, and the decrease, held at Min, would raise the limit above
// Max on congestion: an overload would open it wider. A caller building
// the options from configuration calls it to refuse the configuration with
// this message; NewAdaptive panics with it, as for any other programming
// error.
func (o AdaptiveOptions) Validate() error {
	d := o.withDefaults()
	if d.Min > d.Max {
		return fmt.Errorf("limit: adaptive Min %d is above Max %d (zero takes the default, Min 1 and Max 1000)", d.Min, d.Max)
	}
	return nil
}

// withDefaults is o with each zero or negative bound at its default.
func (o AdaptiveOptions) withDefaults() AdaptiveOptions {
	if o.Min <= 0 {
		o.Min = 1
	}
	if o.Max <= 0 {
		o.Max = 1000
	}
	return o
}

// NewAdaptive returns an AIMD concurrency limiter. It panics if o fails
// Validate.
func NewAdaptive(o AdaptiveOptions) *Adaptive {
	if err := o.Validate(); err != nil {
		panic(err)
	}
	o = o.withDefaults()
	if o.Initial <= 0 {
		o.Initial = 20
	}
	o.Initial = min(max(o.Initial, o.Min), o.Max)
	// Written as "not within range" so that NaN, for which both bounds'
	// checks are false, takes the default too: kept, it made the limit NaN
	// at the first congestion signal, an integer limit of MinInt64.
	if !(o.Backoff > 0 && o.Backoff < 1) {
		o.Backoff = 0.9
	}
	a := &Adaptive{o: o, limit: float64(o.Initial), unreg: func() {}}
	a.cur.Store(int64(o.Initial))
	if o.Name != "" {
		a.unreg = observeAdaptive(a)
	}
	return a
}

// Close stops reporting a's gauges.
func (a *Adaptive) Close() { a.unreg() }

// Ticket is one call Admit let in, to be handed back to Done. It is a
// value, so admitting a call allocates nothing (Acquire's closure was one
// allocation per request on the gateway's hot path).
type Ticket struct {
	round uint64 // the decrease round the call was admitted in
}

// Admit admits one call if fewer than Limit() are in flight. The caller must
// call Done exactly once with the ticket, how long the call took and
// whether it failed because of the protected resource (not the client's
// fault). Unlike Acquire's release, Done cannot tell a second call with the
// same ticket from a new one: callers that cannot guarantee "exactly once"
// should use Acquire.
func (a *Adaptive) Admit() (Ticket, bool) {
	for {
		n := a.inflight.Load()
		if n >= a.cur.Load() {
			return Ticket{}, false
		}
		if a.inflight.CompareAndSwap(n, n+1) {
			return Ticket{round: a.round.Load()}, true
		}
	}
}

// Done ends a call admitted with t.
func (a *Adaptive) Done(t Ticket, latency time.Duration, failed bool) {
	inUse := a.inflight.Add(-1) + 1
	a.observe(t.round, inUse, failed || (a.o.Latency > 0 && latency > a.o.Latency))
}

// Forget ends a call admitted with t that says nothing about the protected
// resource, such as one cut short by its own client's deadline: its slot is
// freed and the limit neither grows nor shrinks. Done would count it as a
// healthy completion, and calls that never got an answer would grow the
// limit. Like Done, exactly once per ticket, and never after Done.
func (a *Adaptive) Forget(Ticket) { a.inflight.Add(-1) }

// Acquire is Admit with a release function that ignores calls after the
// first, for callers that might release twice (middleware with panics and
// early returns). The closure costs an allocation per call.
func (a *Adaptive) Acquire() (release func(latency time.Duration, failed bool), ok bool) {
	t, ok := a.Admit()
	if !ok {
		return nil, false
	}
	var once atomic.Bool
	return func(latency time.Duration, failed bool) {
		if once.CompareAndSwap(false, true) {
			a.Done(t, latency, failed)
		}
	}, true
}

func (a *Adaptive) observe(round uint64, inUse int64, congested bool) {
	// The common completion (healthy, limit far from used) changes nothing:
	// decide that without the lock, which every completion took before.
	// cur is int(limit) <= limit, so this never skips a growth step.
	if !congested && inUse*2 < a.cur.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case congested:
		if round != a.round.Load() {
			return // admitted before the last decrease: already accounted for
		}
		a.limit = max(float64(a.o.Min), a.limit*a.o.Backoff)
		a.round.Add(1)
	case float64(inUse)*2 >= a.limit:
		// Grow only while the limit is being used; otherwise a quiet period
		// would inflate it to Max and the next overload would meet no limit.
		a.limit = min(float64(a.o.Max), a.limit+1/a.limit)
	default:
		return
	}
	a.cur.Store(int64(a.limit))
}

// Limit is the current concurrency limit.
func (a *Adaptive) Limit() int { return int(a.cur.Load()) }

// InFlight is how many admitted calls have not been released.
func (a *Adaptive) InFlight() int { return int(a.inflight.Load()) }
