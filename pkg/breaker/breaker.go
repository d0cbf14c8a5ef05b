// Package breaker stops calls to an upstream that is failing, so callers fail
// fast instead of queueing behind timeouts, and the upstream gets room to
// recover.
//
// The state machine and the sliding-window counts are sony/gobreaker v2's.
// This package adds what gobreaker leaves to the caller: a trip rule by
// failure rate with a minimum request count, an open period that grows with
// each consecutive trip (exponential backoff with jitter, so a fleet of
// clients does not probe a recovering upstream in lockstep), the one
// definition of "failure" the platform uses (IsFailure), and the state as a
// metric.
package breaker

import (
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrOpen means the breaker is open: the call was not attempted.
var ErrOpen = errors.New("circuit breaker open")

// ErrTooManyTrials means the breaker is half-open and its trial calls are
// all taken: the call was not attempted.
var ErrTooManyTrials = errors.New("circuit breaker half-open: trial calls taken")

// State of a breaker. The numeric values are what the state metric reports.
type State int

const (
	Closed   State = 0
	HalfOpen State = 1
	Open     State = 2
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	default:
		return "open"
	}
}

// Settings tunes a Breaker. Zero values take the defaults shown.
type Settings struct {
	Window       time.Duration // sliding window for the failure rate (10s)
	Buckets      int           // the window moves in Window/Buckets steps (10)
	MinRequests  uint32        // completed calls in the window before it may trip (20)
	FailureRatio float64       // trips at or above this share of failures (0.5)

	OpenBase time.Duration // first open period (1s); doubles per consecutive trip
	OpenMax  time.Duration // cap on the open period (30s)
	Jitter   float64       // the open period is shortened by up to this share (0.2)

	HalfOpenTrials uint32 // calls let through while half-open; all must succeed to close (3)

	// OnStateChange, if set, is called after each transition (under the
	// breaker's lock: do not call back into the breaker).
	OnStateChange func(name string, from, to State)

	now func() time.Time // tests drive the open period by hand
}

func (s *Settings) defaults() {
	if s.Window <= 0 {
		s.Window = 10 * time.Second
	}
	if s.Buckets <= 0 {
		s.Buckets = 10
	}
	if s.MinRequests == 0 {
		s.MinRequests = 20
	}
	if s.FailureRatio <= 0 || s.FailureRatio > 1 {
		s.FailureRatio = 0.5
	}
	if s.OpenBase <= 0 {
		s.OpenBase = time.Second
	}
	if s.OpenMax < s.OpenBase {
		s.OpenMax = max(30*time.Second, s.OpenBase)
	}
	if s.Jitter < 0 || s.Jitter >= 1 {
		s.Jitter = 0.2
	}
	if s.HalfOpenTrials == 0 {
		s.HalfOpenTrials = 3
	}
	if s.now == nil {
		s.now = time.Now
	}
}

// Breaker guards one upstream. It is safe for concurrent use.
//
// The open period is enforced here (openUntil) rather than by gobreaker's
// fixed Timeout, which cannot grow between trips: gobreaker is given a 1ns
// timeout so that it is ready for half-open the moment our gate lifts. The
// gate is also the hot path while open: one atomic load, no lock.
type Breaker struct {
	name      string
	s         Settings
	cb        *gobreaker.TwoStepCircuitBreaker[struct{}]
	openUntil atomic.Int64 // unix nanos
	trips     atomic.Int32 // consecutive trips without closing, for the backoff
	unreg     func()
}

// New returns a closed breaker for the upstream called name.
func New(name string, s Settings) *Breaker {
	s.defaults()
	b := &Breaker{name: name, s: s}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  s.HalfOpenTrials,
		Interval:     s.Window,
		BucketPeriod: s.Window / time.Duration(s.Buckets),
		Timeout:      time.Nanosecond,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			done := c.TotalSuccesses + c.TotalFailures
			return done >= s.MinRequests && float64(c.TotalFailures) >= s.FailureRatio*float64(done)
		},
		OnStateChange: b.changed,
		IsExcluded:    func(err error) bool { return errors.Is(err, errExcluded) },
	})
	b.unreg = observe(b)
	return b
}

// Outcome sentinels passed through gobreaker's error-based reporting.
var (
	errFailed   = errors.New("failed")
	errExcluded = errors.New("not counted")
)

func (b *Breaker) changed(_ string, from, to gobreaker.State) {
	switch to {
	case gobreaker.StateOpen:
		n := b.trips.Add(1)
		b.openUntil.Store(b.s.now().Add(b.openFor(int(n))).UnixNano())
	case gobreaker.StateClosed:
		b.trips.Store(0)
		b.openUntil.Store(0) // lets admit skip reading the clock while closed
	}
	transitions(b.name, fromGo(to))
	if b.s.OnStateChange != nil {
		b.s.OnStateChange(b.name, fromGo(from), fromGo(to))
	}
}

// openFor is OpenBase·2^(trip-1) capped at OpenMax, minus up to Jitter of it.
func (b *Breaker) openFor(trip int) time.Duration {
	d := b.s.OpenBase
	for i := 1; i < trip && d < b.s.OpenMax; i++ {
		d *= 2
	}
	d = min(d, b.s.OpenMax)
	return d - time.Duration(rand.Float64()*b.s.Jitter*float64(d))
}

// Allow asks to make one call. On success the caller must call done exactly
// once with IsFailure's verdict on the outcome. A call that ends for a reason
// that says nothing about the upstream (the client cancelled) should be
// reported through Guard instead, which leaves it out of the counts.
func (b *Breaker) Allow() (done func(failed bool), err error) {
	report, err := b.admit()
	if err != nil {
		return nil, err
	}
	return func(failed bool) {
		if failed {
			report(errFailed)
		} else {
			report(nil)
		}
	}, nil
}

// Guard is Allow with the classification built in: report receives the
// call's error and HTTP status (0 if none), counts IsFailure outcomes as
// failures, ignores client cancellation entirely (neither success nor
// failure, and a half-open trial slot is given back), and counts the rest as
// successes.
func (b *Breaker) Guard() (report func(err error, status int), err error) {
	r, err := b.admit()
	if err != nil {
		return nil, err
	}
	return func(err error, status int) {
		switch {
		case Cancelled(err):
			r(errExcluded)
		case IsFailure(err, status):
			r(errFailed)
		default:
			r(nil)
		}
	}, nil
}

func (b *Breaker) admit() (func(error), error) {
	if until := b.openUntil.Load(); until != 0 && b.s.now().UnixNano() < until {
		return nil, ErrOpen
	}
	done, err := b.cb.Allow()
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		return nil, ErrOpen
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil, ErrTooManyTrials
	case err != nil:
		return nil, err
	}
	return done, nil
}

// State is the breaker's state now.
func (b *Breaker) State() State {
	if until := b.openUntil.Load(); until != 0 && b.s.now().UnixNano() < until {
		return Open
	}
	return fromGo(b.cb.State())
}

// Name is the upstream name given to New.
func (b *Breaker) Name() string { return b.name }

// Close stops reporting this breaker's state metric.
func (b *Breaker) Close() { b.unreg() }

func fromGo(s gobreaker.State) State {
	switch s {
	case gobreaker.StateClosed:
		return Closed
	case gobreaker.StateHalfOpen:
		return HalfOpen
	default:
		return Open
	}
}
